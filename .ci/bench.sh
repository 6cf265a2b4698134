#!/usr/bin/env bash
# `npm run bench`: what the bench needs, then the bench. PostGIS (the nearest search's
# database peer) comes from Debian's postgresql-<major>-postgis-3 for the local PostgreSQL,
# installed here as the tests install Chromium (as root or with password-less sudo; where
# that is impossible it says so in one line, and the bench then fails naming PostGIS
# unless run with --allow-missing). Then the services of .ci/with-services.sh and the bench.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
ENSURE_PREFIX=bench
. "$ROOT/.ci/ensure-package.sh"

# The local cluster's major version (the one with-services.sh starts), else the newest installed.
PG_MAJOR=$(ls /etc/postgresql 2>/dev/null | sort -n | head -n1)
[ -n "$PG_MAJOR" ] || PG_MAJOR=$(ls /usr/lib/postgresql 2>/dev/null | sort -n | tail -n1)
find_postgis() { [ -n "$PG_MAJOR" ] && [ -f "/usr/share/postgresql/$PG_MAJOR/extension/postgis.control" ]; }
if [ -n "$PG_MAJOR" ]; then
  ensure_package "postgresql-$PG_MAJOR-postgis-3" find_postgis "the bench's PostGIS peer" \
    || echo "bench: PostGIS is missing for PostgreSQL $PG_MAJOR and cannot be installed here (needs apt-get as root); install postgresql-$PG_MAJOR-postgis-3" >&2
fi

exec bash "$ROOT/.ci/with-services.sh" node --expose-gc "$ROOT/bench/run.ts" "$@"
