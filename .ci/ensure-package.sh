# Sourced by .ci/test.sh and .ci/bench.sh: installs a Debian package the suites or the bench
# need when it is missing, as root or with password-less sudo; says so in one line (prefixed
# with $ENSURE_PREFIX) when the install fails, and leaves the caller to say what is missing.
# ensure_package PACKAGE FINDER WHAT: installs Debian's PACKAGE unless FINDER finds it already.
ensure_package() {
  local package=$1 finder=$2 what=$3
  "$finder" >/dev/null && return 0
  local sudo_=""
  [ "$(id -u)" = 0 ] || { sudo -n true 2>/dev/null && sudo_="sudo -n"; }
  if command -v apt-get >/dev/null 2>&1 && { [ "$(id -u)" = 0 ] || [ -n "$sudo_" ]; }; then
    echo "${ENSURE_PREFIX:-test}: installing Debian's $package for $what (once)" >&2
    # Another apt (unattended upgrades, a second checkout's tests) may hold dpkg's lock:
    # wait for it instead of failing on the spot, which once lost a whole CI run.
    local apt_="$sudo_ apt-get -o DPkg::Lock::Timeout=600 -qq"
    [ -n "${APT_UPDATED:-}" ] || { $apt_ update >/dev/null 2>&1; APT_UPDATED=1; }
    DEBIAN_FRONTEND=noninteractive $apt_ install -y "$package" >/tmp/apt-$package.log 2>&1 \
      || echo "${ENSURE_PREFIX:-test}: apt-get install $package failed: $(tail -n 1 /tmp/apt-$package.log)" >&2
  fi
  "$finder" >/dev/null
}

