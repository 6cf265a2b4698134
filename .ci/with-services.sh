#!/usr/bin/env bash
# Runs a command with PostgreSQL, Redis and Kafka reachable, and their addresses in
# DATABASE_URL, REDIS_URL and KAFKA_BROKERS. For each service: a variable already set
# wins; else a server answering on the default local port is used; else it is started
# here (PostgreSQL and Redis from the machine's packages, Kafka by scripts/kafka.sh).
# What cannot be had is left unset, and the suites that need it fail saying so.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)

answers() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_for() { for _ in $(seq 1 60); do answers "$1" && return 0; sleep 0.5; done; return 1; }

if [ -z "${DATABASE_URL:-}" ]; then
  if ! answers 5432 && command -v pg_ctlcluster >/dev/null && [ -d /etc/postgresql ]; then
    echo "with-services: starting PostgreSQL" >&2
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start >&2 || true
    wait_for 5432 || true
  fi
  if answers 5432; then export DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres
  else echo "with-services: PostgreSQL is not available; set DATABASE_URL" >&2; fi
fi

if [ -z "${REDIS_URL:-}" ]; then
  if ! answers 6379 && command -v redis-server >/dev/null; then
    echo "with-services: starting Redis" >&2
    mkdir -p /var/lib/redis /var/log/redis 2>/dev/null || true
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log >&2 || true
    wait_for 6379 || true
  fi
  if answers 6379; then export REDIS_URL=redis://127.0.0.1:6379
  else echo "with-services: Redis is not available; set REDIS_URL" >&2; fi
fi

if [ -z "${KAFKA_BROKERS:-}" ]; then
  if ! answers 9092 && command -v java >/dev/null && command -v mvn >/dev/null; then
    bash "$ROOT/scripts/kafka.sh" start >&2 || true
  fi
  if answers 9092; then export KAFKA_BROKERS=127.0.0.1:9092
  else echo "with-services: Kafka is not available; set KAFKA_BROKERS or run scripts/kafka.sh start" >&2; fi
fi

echo "with-services: DATABASE_URL=${DATABASE_URL:-unset} REDIS_URL=${REDIS_URL:-unset} KAFKA_BROKERS=${KAFKA_BROKERS:-unset}" >&2
exec "$@"
