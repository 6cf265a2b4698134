#!/usr/bin/env bash
# `npm test`: everything the suites need, then type checks and the suites.
# The browser suites need Chromium, the monitoring suite Prometheus and promtool; where
# they are not installed, Debian's packages are installed here (as root, or with
# password-less sudo) so a fresh machine passes with nothing installed by hand. Where
# that is impossible it says so in one line.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)

first_executable() {
  for c in "$@"; do
    if [ -n "$c" ] && [ -x "$c" ]; then echo "$c"; return 0; fi
  done
  return 1
}
find_chromium() { first_executable "${CHROMIUM_PATH:-}" /usr/bin/chromium /usr/bin/chromium-browser /usr/bin/google-chrome; }
find_prometheus() { first_executable "${PROMETHEUS_PATH:-}" /usr/bin/prometheus; }
find_promtool() { first_executable "${PROMTOOL_PATH:-}" /usr/bin/promtool; }

. "$ROOT/.ci/ensure-package.sh"

ensure_package chromium find_chromium "the browser tests" \
  || { echo "test: Chromium is missing and cannot be installed here (needs apt-get as root); install it or set CHROMIUM_PATH" >&2; exit 1; }
ensure_package prometheus find_prometheus "the monitoring tests" && ensure_package prometheus find_promtool "the monitoring tests" \
  || { echo "test: Prometheus is missing and cannot be installed here (needs apt-get as root); install Debian's prometheus or set PROMETHEUS_PATH and PROMTOOL_PATH" >&2; exit 1; }
CHROMIUM_PATH=$(find_chromium)
PROMETHEUS_PATH=$(find_prometheus)
PROMTOOL_PATH=$(find_promtool)
export CHROMIUM_PATH PROMETHEUS_PATH PROMTOOL_PATH

exec bash "$ROOT/.ci/with-services.sh" npm run test:run
