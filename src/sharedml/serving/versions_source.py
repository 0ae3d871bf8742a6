"""Where a serving process resolves ``NAME@ALIAS`` and reads the parts' registered fingerprints.

Two registries answer the same question (:class:`VersionBook`):

* a ``sharedml run`` models folder (:class:`~sharedml.standalone.models.LocalRegistry`,
  ``--models DIR``);
* the platform's registry (:class:`PlatformVersions`, ``--platform URL`` with
  an API token and the deployment CA): ``GET /api/v1/registry/models/{ref}``
  over HTTPS, verified against the CA, as the SDK calls it. The platform
  holds metadata only — the version id and each party's part fingerprint —
  so the parts still come from this party's own part store (``--parts``,
  ``--keys``); a part whose fingerprint is not the registry's is refused
  when it loads (:meth:`~sharedml.modelpart.PartStore.load`).

A version is resolved when it is switched to (the gateway's ``serve`` or
``canary``, a partner's first request for it); a version's id never changes,
so a later alias move on the platform changes nothing that is served until
the operator switches again.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from sharedml.errors import ConfigError, SharedMLError
from sharedml.modelpart.refs import Resolved

if TYPE_CHECKING:
    from sharedml.sdk import Client

STEP = "serve: versions"


class VersionBook(Protocol):
    """Resolves a model reference (``NAME@ALIAS``, ``NAME@N`` or an id) to a version."""

    def resolve_text(self, ref: str) -> Resolved: ...


class PlatformVersions:
    """The platform's model registry, read with an API token (see the module docstring)."""

    def __init__(self, client: Client) -> None:
        self.client = client

    def resolve_text(self, ref: str) -> Resolved:
        try:
            doc = self.client.model_version(ref)
            return Resolved(str(doc["uid"]), str(doc["name"]), int(doc["version"]),
                            {str(p): str(f) for p, f in dict(doc["fingerprints"]).items()})
        except SharedMLError as exc:
            raise ConfigError(f"the platform's registry did not resolve {ref!r}: "
                              f"{exc.message}", step=STEP, remedy=exc.remedy or
                              "check the name and alias ('sharedml model show REF' against "
                              "the platform) and that the token may read the registry") from None
        except (KeyError, TypeError, ValueError):
            raise ConfigError(f"the platform's answer for {ref!r} is not a model version",
                              step=STEP) from None


def platform_versions(url: str, token_file: Path | None, ca: Path | None) -> PlatformVersions:
    """A :class:`PlatformVersions` on ``url`` with the token in ``token_file``, verifying
    the platform's certificate against ``ca`` (else the system's CAs)."""
    from sharedml.sdk import Client

    if token_file is None:
        raise ConfigError("reading the platform's registry needs an API token",
                          step="serve: start", remedy="pass --token-file FILE (a token "
                          "with registry.read: 'sharedml user token NAME')")
    token = Path(token_file).read_text(encoding="utf-8").strip()
    return PlatformVersions(Client(url, token, verify=str(ca) if ca is not None else True))
