#!/usr/bin/env bash
# One Kafka broker (KRaft: broker and controller in one process) on which every listener
# authenticates: clients (the nodes) with SCRAM-SHA-512 as $KAFKA_SASL_USERNAME, brokers and
# controllers among themselves with PLAIN as "broker". Whoever reaches the port without the
# password is refused. docker-compose.yml runs it in the apache/kafka image; scripts/kafka.sh
# runs it on this machine when asked for SASL, so the tests prove this very file.
#
# SASL_PLAINTEXT: SCRAM never sends the client's password, but the traffic itself (and the
# brokers' PLAIN exchange) is in clear; put TLS on the listeners where the network is shared.
#
# Passwords are files, never variables or arguments of the broker process (the one-off format
# step below has the client's on its command line, inside the container, for a moment):
#   $KAFKA_SECRETS_DIR/kafka_password          the client user's (the nodes' KAFKA_SASL_PASSWORD_FILE)
#   $KAFKA_SECRETS_DIR/kafka_broker_password   the brokers' own
# Required: KAFKA_NODE_ID, CLUSTER_ID, KAFKA_CONTROLLER_QUORUM_VOTERS, KAFKA_ADVERTISED_HOST.
# KAFKA_PROPERTIES: more server.properties lines (replication, retention, ...).
set -euo pipefail
umask 077

: "${KAFKA_NODE_ID:?}" "${CLUSTER_ID:?}" "${KAFKA_CONTROLLER_QUORUM_VOTERS:?}" "${KAFKA_ADVERTISED_HOST:?}"
PORT=${KAFKA_PORT:-9092}
CONTROLLER_PORT=${KAFKA_CONTROLLER_PORT:-9093}
BIND=${KAFKA_BIND_HOST:-}
USER_NAME=${KAFKA_SASL_USERNAME:-dispatch}
DATA=${KAFKA_LOG_DIRS:-/var/lib/kafka/data}
CONFIG=${KAFKA_CONFIG_DIR:-/tmp/kafka-config}
SECRETS=${KAFKA_SECRETS_DIR:-/run/secrets}
CLASSPATH_LIBS=${KAFKA_CLASSPATH:-/opt/kafka/libs/*}
LOG4J=${KAFKA_LOG4J:-file:/opt/kafka/config/log4j.properties}

secret() {
  local value
  value=$(tr -d '\r\n' < "$SECRETS/$1")
  # Written into JAAS and SCRAM option strings unquoted: keep to characters that need no escaping.
  if ! [[ $value =~ ^[A-Za-z0-9_-]{16,}$ ]]; then
    echo "kafka-broker.sh: $SECRETS/$1 must be 16 or more letters, digits, - or _ (npm run secrets makes one)" >&2
    exit 2
  fi
  printf '%s' "$value"
}
CLIENT_PASSWORD=$(secret kafka_password)
BROKER_PASSWORD=$(secret kafka_broker_password)
PLAIN_JAAS="org.apache.kafka.common.security.plain.PlainLoginModule required"
PLAIN_JAAS+=" username=\"broker\" password=\"$BROKER_PASSWORD\" user_broker=\"$BROKER_PASSWORD\";"

mkdir -p "$CONFIG" "$DATA"
cat > "$CONFIG/server.properties" <<PROPS
process.roles=broker,controller
node.id=$KAFKA_NODE_ID
controller.quorum.voters=$KAFKA_CONTROLLER_QUORUM_VOTERS
listeners=BROKER://$BIND:$PORT,CONTROLLER://$BIND:$CONTROLLER_PORT
advertised.listeners=BROKER://$KAFKA_ADVERTISED_HOST:$PORT
listener.security.protocol.map=BROKER:SASL_PLAINTEXT,CONTROLLER:SASL_PLAINTEXT
inter.broker.listener.name=BROKER
controller.listener.names=CONTROLLER
sasl.mechanism.inter.broker.protocol=PLAIN
sasl.mechanism.controller.protocol=PLAIN
listener.name.broker.sasl.enabled.mechanisms=SCRAM-SHA-512,PLAIN
listener.name.broker.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.broker.plain.sasl.jaas.config=$PLAIN_JAAS
listener.name.controller.sasl.enabled.mechanisms=PLAIN
listener.name.controller.plain.sasl.jaas.config=$PLAIN_JAAS
log.dirs=$DATA
${KAFKA_PROPERTIES:-}
PROPS
# For tools run beside the broker (the compose healthcheck): the brokers' own credentials.
cat > "$CONFIG/client.properties" <<PROPS
security.protocol=SASL_PLAINTEXT
sasl.mechanism=PLAIN
sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required username="broker" password="$BROKER_PASSWORD";
PROPS

# shellcheck disable=SC2206 # KAFKA_HEAP_OPTS is a list of options
JAVA=(java ${KAFKA_HEAP_OPTS:--Xms512m -Xmx1g} -XX:+UseG1GC -Djava.awt.headless=true -Dlog4j.configuration="$LOG4J" -cp "$CLASSPATH_LIBS")

# The client user's SCRAM credential is part of the cluster's first metadata (KRaft keeps it
# there, not in a file): written once, when the storage is formatted.
"${JAVA[@]}" kafka.tools.StorageTool format --ignore-formatted -t "$CLUSTER_ID" -c "$CONFIG/server.properties" \
  --add-scram "SCRAM-SHA-512=[name=$USER_NAME,password=$CLIENT_PASSWORD]" > /dev/null
exec "${JAVA[@]}" kafka.Kafka "$CONFIG/server.properties"
