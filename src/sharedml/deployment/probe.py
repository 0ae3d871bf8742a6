"""``python -m sharedml.deployment.probe URL``: a container health check (exit 0 when 2xx).

Run inside the container against its own loopback, so it checks liveness, not
identity: a platform's HTTPS certificate names its public host, which
127.0.0.1 is not, and the probe reads nothing secret.
"""

from __future__ import annotations

import ssl
import sys
import urllib.request


def main(url: str) -> int:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with urllib.request.urlopen(url, timeout=4, context=context) as reply:
            return 0 if 200 <= reply.status < 300 else 1
    except OSError:
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
