#!/usr/bin/env bash
# A single Apache Kafka broker in KRaft mode (combined broker + controller) on
# 127.0.0.1:${KAFKA_PORT:-9092} (controller on ${KAFKA_CONTROLLER_PORT:-9093}), from Maven
# Central jars: no Docker, no tarball download. A second broker (the soak restarts its own)
# is the same command with other ports and its own KAFKA_DATA_DIR.
#
# Kafka 3.9.1: the last 3.x line. kafkajs 2.2.4 speaks the older protocol versions
# that Kafka 4 removed (KIP-896), so 4.x is not a safe match for it.
#
#   scripts/kafka.sh start | stop | status
#
# With KAFKA_SASL_PASSWORD (or KAFKA_SASL_PASSWORD_FILE) set, the broker authenticates every
# client: SCRAM-SHA-512 as ${KAFKA_SASL_USERNAME:-dispatch} with that password (the node's own
# variables, so one environment serves both). It is then docker/kafka-broker.sh, the script
# compose starts its brokers with. A data directory keeps the mode it was first started in.
#
# Jars are cached in .ci/.cache/kafka-<version>/, data and logs live in
# ${KAFKA_DATA_DIR:-.ci/.kafka}. `start` is idempotent.
set -euo pipefail

VERSION=3.9.1
PORT=${KAFKA_PORT:-9092}
CONTROLLER_PORT=${KAFKA_CONTROLLER_PORT:-9093}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
CACHE="$ROOT/.ci/.cache/kafka-$VERSION"
DATA=${KAFKA_DATA_DIR:-$ROOT/.ci/.kafka}
PIDFILE="$DATA/kafka.pid"
LOG="$DATA/server.log"

answers() { (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; }
sasl() { [ -n "${KAFKA_SASL_PASSWORD:-}${KAFKA_SASL_PASSWORD_FILE:-}" ]; }

fetch_jars() {
  [ -f "$CACHE/.complete" ] && return
  mkdir -p "$CACHE"
  cat > "$CACHE/pom.xml" <<POM
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.dispatch</groupId><artifactId>kafka-runtime</artifactId><version>1</version>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>$VERSION</version></dependency>
    <dependency><groupId>org.slf4j</groupId><artifactId>slf4j-reload4j</artifactId><version>1.7.36</version></dependency>
  </dependencies>
</project>
POM
  echo "kafka.sh: fetching Kafka $VERSION jars from Maven Central (once)..." >&2
  mvn -q -B -f "$CACHE/pom.xml" dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$CACHE/libs" >&2
  touch "$CACHE/.complete"
}

# What a single development broker needs whichever its listeners.
common_properties() {
  cat <<PROPS
num.partitions=1
auto.create.topics.enable=true
offsets.topic.replication.factor=1
offsets.topic.num.partitions=8
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
group.initial.rebalance.delay.ms=0
log.retention.hours=24
PROPS
}

write_config() {
  mkdir -p "$DATA/logs"
  # In SASL mode docker/kafka-broker.sh writes the broker's own server.properties.
  sasl || cat > "$DATA/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$PORT,CONTROLLER://127.0.0.1:$CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$PORT
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs=$DATA/logs
$(common_properties)
PROPS
  cat > "$DATA/log4j.properties" <<L4J
log4j.rootLogger=INFO, file
log4j.appender.file=org.apache.log4j.FileAppender
log4j.appender.file.File=$LOG
log4j.appender.file.layout=org.apache.log4j.PatternLayout
log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka=INFO
log4j.logger.org.apache.kafka=WARN
log4j.logger.state.change.logger=WARN
L4J
}

java_cmd() {
  java -Xms256m -Xmx512m -XX:+UseG1GC -Djava.awt.headless=true \
    -Dlog4j.configuration="file:$DATA/log4j.properties" -cp "$CACHE/libs/*" "$@"
}

# The SASL broker's password files (mode 600 in a 700 directory) and its cluster id, kept in the data directory.
write_sasl_secrets() {
  mkdir -p "$DATA/secrets"
  chmod 700 "$DATA/secrets"
  if [ -n "${KAFKA_SASL_PASSWORD_FILE:-}" ]; then tr -d '\r\n' < "$KAFKA_SASL_PASSWORD_FILE" > "$DATA/secrets/kafka_password"
  else printf '%s' "$KAFKA_SASL_PASSWORD" > "$DATA/secrets/kafka_password"; fi
  [ -f "$DATA/secrets/kafka_broker_password" ] || head -c 32 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n' > "$DATA/secrets/kafka_broker_password"
  chmod 600 "$DATA/secrets/"*
  [ -f "$DATA/cluster-id" ] || java_cmd kafka.tools.StorageTool random-uuid > "$DATA/cluster-id"
}

# Starts the broker in a session of its own; its pid (java's: both exec) goes to $PIDFILE.
launch() {
  if sasl; then
    write_sasl_secrets
    KAFKA_NODE_ID=1 CLUSTER_ID=$(cat "$DATA/cluster-id") KAFKA_CONTROLLER_QUORUM_VOTERS="1@127.0.0.1:$CONTROLLER_PORT" \
      KAFKA_ADVERTISED_HOST=127.0.0.1 KAFKA_BIND_HOST=127.0.0.1 KAFKA_PORT=$PORT KAFKA_CONTROLLER_PORT=$CONTROLLER_PORT \
      KAFKA_SASL_USERNAME=${KAFKA_SASL_USERNAME:-dispatch} KAFKA_LOG_DIRS="$DATA/logs" KAFKA_CONFIG_DIR="$DATA" \
      KAFKA_SECRETS_DIR="$DATA/secrets" KAFKA_CLASSPATH="$CACHE/libs/*" KAFKA_LOG4J="file:$DATA/log4j.properties" \
      KAFKA_HEAP_OPTS="-Xms256m -Xmx512m" KAFKA_PROPERTIES="$(common_properties)" \
      setsid nohup bash "$ROOT/docker/kafka-broker.sh" > "$DATA/stdout.log" 2>&1 < /dev/null &
  else
    if [ ! -f "$DATA/logs/meta.properties" ]; then
      java_cmd kafka.tools.StorageTool format -t "$(java_cmd kafka.tools.StorageTool random-uuid)" -c "$DATA/server.properties" >/dev/null
    fi
    setsid nohup bash -c "exec java -Xms256m -Xmx512m -XX:+UseG1GC -Djava.awt.headless=true \
      -Dlog4j.configuration=file:$DATA/log4j.properties -cp '$CACHE/libs/*' kafka.Kafka '$DATA/server.properties'" \
      > "$DATA/stdout.log" 2>&1 < /dev/null &
  fi
  echo $! > "$PIDFILE"
}

start() {
  if answers; then echo "kafka.sh: a broker already answers on 127.0.0.1:$PORT"; return; fi
  local started=$SECONDS
  fetch_jars
  write_config
  : > "$LOG"
  launch
  for _ in $(seq 1 120); do
    if grep -q "Kafka Server started" "$LOG" 2>/dev/null && answers; then
      echo "kafka.sh: Kafka $VERSION ready on 127.0.0.1:$PORT$(sasl && echo ' (SASL)') ($((SECONDS - started)) s)"
      return
    fi
    if ! kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then break; fi
    sleep 0.5
  done
  echo "kafka.sh: the broker did not start; last lines of its logs:" >&2
  tail -n 30 "$DATA/stdout.log" "$LOG" >&2 || true
  exit 1
}

stop() {
  if [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
    kill "$(cat "$PIDFILE")"
    for _ in $(seq 1 60); do kill -0 "$(cat "$PIDFILE")" 2>/dev/null || break; sleep 0.5; done
    echo "kafka.sh: stopped"
  else
    echo "kafka.sh: not running (from this checkout)"
  fi
  rm -f "$PIDFILE"
}

case "${1:-start}" in
  start) start ;;
  stop) stop ;;
  status) if answers; then echo "kafka.sh: answering on 127.0.0.1:$PORT"; else echo "kafka.sh: not answering"; exit 1; fi ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
