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

# ensure_package PACKAGE FINDER WHAT: installs Debian's PACKAGE unless FINDER finds it already.
ensure_package() {
  local package=$1 finder=$2 what=$3
  "$finder" >/dev/null && return 0
  local sudo_=""
  [ "$(id -u)" = 0 ] || { sudo -n true 2>/dev/null && sudo_="sudo -n"; }
  if command -v apt-get >/dev/null 2>&1 && { [ "$(id -u)" = 0 ] || [ -n "$sudo_" ]; }; then
    echo "test: installing Debian's $package for $what (once)" >&2
    # Another apt (unattended upgrades, a second checkout's tests) may hold dpkg's lock:
    # wait for it instead of failing on the spot, which once lost a whole CI run.
    local apt_="$sudo_ apt-get -o DPkg::Lock::Timeout=600 -qq"
    [ -n "${APT_UPDATED:-}" ] || { $apt_ update >/dev/null 2>&1; APT_UPDATED=1; }
    DEBIAN_FRONTEND=noninteractive $apt_ install -y "$package" >/tmp/apt-$package.log 2>&1 \
      || echo "test: apt-get install $package failed: $(tail -n 1 /tmp/apt-$package.log)" >&2
  fi
  "$finder" >/dev/null
}

ensure_package chromium find_chromium "the browser tests" \
  || { echo "test: Chromium is missing and cannot be installed here (needs apt-get as root); install it or set CHROMIUM_PATH" >&2; exit 1; }
ensure_package prometheus find_prometheus "the monitoring tests" && ensure_package prometheus find_promtool "the monitoring tests" \
  || { echo "test: Prometheus is missing and cannot be installed here (needs apt-get as root); install Debian's prometheus or set PROMETHEUS_PATH and PROMTOOL_PATH" >&2; exit 1; }
CHROMIUM_PATH=$(find_chromium)
PROMETHEUS_PATH=$(find_prometheus)
PROMTOOL_PATH=$(find_promtool)
export CHROMIUM_PATH PROMETHEUS_PATH PROMTOOL_PATH

exec bash "$ROOT/.ci/with-services.sh" npm run test:run
