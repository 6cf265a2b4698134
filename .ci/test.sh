#!/usr/bin/env bash
# `npm test`: everything the suites need, then type checks and the suites.
# The browser suites need Chromium; where none is installed, Debian's package is
# installed here (as root, or with password-less sudo) so a fresh machine passes
# with nothing installed by hand. Where that is impossible it says so in one line.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)

find_chromium() {
  for c in "${CHROMIUM_PATH:-}" /usr/bin/chromium /usr/bin/chromium-browser /usr/bin/google-chrome; do
    if [ -n "$c" ] && [ -x "$c" ]; then echo "$c"; return 0; fi
  done
  return 1
}

if ! CHROMIUM_PATH=$(find_chromium); then
  sudo_=""
  [ "$(id -u)" = 0 ] || { sudo -n true 2>/dev/null && sudo_="sudo -n"; }
  if command -v apt-get >/dev/null 2>&1 && { [ "$(id -u)" = 0 ] || [ -n "$sudo_" ]; }; then
    echo "test: installing Debian's chromium for the browser tests (once)" >&2
    $sudo_ apt-get update -qq >/dev/null 2>&1
    DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq chromium >/dev/null 2>&1
  fi
  if ! CHROMIUM_PATH=$(find_chromium); then
    echo "test: Chromium is missing and cannot be installed here (needs apt-get as root); install it or set CHROMIUM_PATH" >&2
    exit 1
  fi
fi
export CHROMIUM_PATH

exec bash "$ROOT/.ci/with-services.sh" npm run test:run
