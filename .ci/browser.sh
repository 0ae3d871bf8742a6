#!/usr/bin/env bash
# The browser the console's tests drive (tests/platform/console/): Debian's chromium,
# installed from Debian's packages if missing. Playwright's own browser download does
# not work on these machines; the tests launch /usr/bin/chromium through the
# `playwright` Python package, a dev dependency (`make venv` installs it).
# Not root and no chromium: the browser tests skip, saying so. Idempotent.
set -euo pipefail

if [ -x /usr/bin/chromium ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "browser.sh: not root and no /usr/bin/chromium: the console's browser tests will skip"
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq chromium >/dev/null
echo "browser.sh: installed $(/usr/bin/chromium --version 2>/dev/null || echo chromium)"
