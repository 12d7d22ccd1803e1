#!/usr/bin/env bash
# Local single-node Apache Kafka (KRaft) for development, tests and the demo.
#
#   kafka.sh fetch   download the broker's jars from Maven Central (cached)
#   kafka.sh up      fetch if needed, format storage once, start, wait until it answers
#   kafka.sh down    stop the broker started by `up`
#   kafka.sh status  say whether it answers
#
# A second, secured broker (what the SASL_SSL test starts) takes the same
# commands with these set:
#   KAFKA_STATE_DIR, KAFKA_PORT, KAFKA_CONTROLLER_PORT  its own directory and ports
#   KAFKA_SASL_SSL_PORT  adds a SASL_SSL listener (SCRAM-SHA-512 over TLS,
#                        client certificates required) on this port
#   KAFKA_TLS_DIR        holds broker-keystore.pem (key + certificate chain)
#                        and ca.pem (the CA clients' certificates must chain to)
#   KAFKA_SCRAM_USERS    "name=password[,name=password...]", created at format
#
# No Docker: the jars come from Maven Central through `mvn` and run on the
# machine's Java 17. They are cached outside the repository (in
# $NEWSFLOW_CACHE, default ~/.cache/newsflow) so clones share them; the
# broker's data and logs live under var/kafka/ of the repository.
set -euo pipefail

KAFKA_VERSION="${KAFKA_VERSION:-4.4.0}"
CACHE_DIR="${NEWSFLOW_CACHE:-$HOME/.cache/newsflow}"
LIB_DIR="$CACHE_DIR/kafka-$KAFKA_VERSION/libs"
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
STATE_DIR="${KAFKA_STATE_DIR:-$REPO_ROOT/var/kafka}"
PORT="${KAFKA_PORT:-9092}"
CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-9093}"
HEAP="${KAFKA_HEAP:-1G}"
SASL_SSL_PORT="${KAFKA_SASL_SSL_PORT:-}"
TLS_DIR="${KAFKA_TLS_DIR:-}"
SCRAM_USERS="${KAFKA_SCRAM_USERS:-}"
PID_FILE="$STATE_DIR/kafka.pid"

# shellcheck source=deploy/local/service.sh
. "$(dirname "${BASH_SOURCE[0]}")/service.sh"

log() { printf '[kafka] %s\n' "$*" >&2; }

fetch() {
  if [ -f "$LIB_DIR/.complete" ]; then return 0; fi
  command -v mvn >/dev/null || { log "mvn not found: install Maven (apt-get install maven)"; exit 1; }
  log "downloading Apache Kafka $KAFKA_VERSION jars from Maven Central into $LIB_DIR"
  local work="$CACHE_DIR/kafka-$KAFKA_VERSION/resolve"
  mkdir -p "$work" "$LIB_DIR"
  # A throwaway POM whose only purpose is to let Maven resolve the broker and
  # its transitive runtime dependencies into one directory.
  cat >"$work/pom.xml" <<POM
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>newsflow.local</groupId>
  <artifactId>kafka-runtime</artifactId>
  <version>1</version>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>$KAFKA_VERSION</version></dependency>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka-tools</artifactId><version>$KAFKA_VERSION</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-core</artifactId><version>2.24.3</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j2-impl</artifactId><version>2.24.3</version></dependency>
  </dependencies>
</project>
POM
  mvn -q -B -f "$work/pom.xml" dependency:copy-dependencies \
      -DincludeScope=runtime -DoutputDirectory="$LIB_DIR" >&2
  touch "$LIB_DIR/.complete"
  log "jars cached: $(ls "$LIB_DIR" | wc -l) files"
}

java_cp() { echo "$LIB_DIR/*"; }

answers() {
  # A TCP connect is not enough (the socket opens before the broker can serve
  # metadata), so ask for cluster metadata with kcat when it is installed and
  # fall back to the Kafka tools otherwise.
  if command -v kcat >/dev/null; then
    kcat -b "127.0.0.1:$PORT" -L -m 3 >/dev/null 2>&1
  else
    java -cp "$(java_cp)" org.apache.kafka.tools.BrokerApiVersionsCommand \
      --bootstrap-server "127.0.0.1:$PORT" >/dev/null 2>&1
  fi
}


write_config() {
  mkdir -p "$STATE_DIR/data" "$STATE_DIR/logs"
  cat >"$STATE_DIR/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$PORT,CONTROLLER://127.0.0.1:$CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$STATE_DIR/data
num.partitions=6
offsets.topic.replication.factor=1
offsets.topic.num.partitions=6
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
message.max.bytes=2097152
PROPS
  if [ -n "$SASL_SSL_PORT" ]; then
    [ -f "$TLS_DIR/broker-keystore.pem" ] && [ -f "$TLS_DIR/ca.pem" ] \
      || { log "KAFKA_TLS_DIR must hold broker-keystore.pem and ca.pem"; exit 1; }
    # The PLAINTEXT listener stays on loopback for the broker's own use
    # (and for `answers`); clients are meant to use the SASL_SSL one.
    sed -i \
      -e "s|^listeners=.*|listeners=PLAINTEXT://127.0.0.1:$PORT,SASL_SSL://127.0.0.1:$SASL_SSL_PORT,CONTROLLER://127.0.0.1:$CONTROLLER_PORT|" \
      -e "s|^advertised.listeners=.*|advertised.listeners=PLAINTEXT://127.0.0.1:$PORT,SASL_SSL://127.0.0.1:$SASL_SSL_PORT|" \
      -e "s|^listener.security.protocol.map=.*|listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SASL_SSL:SASL_SSL|" \
      "$STATE_DIR/server.properties"
    cat >>"$STATE_DIR/server.properties" <<PROPS
sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.ssl.keystore.type=PEM
listener.name.sasl_ssl.ssl.keystore.location=$TLS_DIR/broker-keystore.pem
listener.name.sasl_ssl.ssl.truststore.type=PEM
listener.name.sasl_ssl.ssl.truststore.location=$TLS_DIR/ca.pem
listener.name.sasl_ssl.ssl.client.auth=required
PROPS
  fi
  cat >"$STATE_DIR/log4j2.properties" <<LOG
status = warn
appender.file.type = File
appender.file.name = file
appender.file.fileName = $STATE_DIR/logs/server.log
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = info
rootLogger.appenderRef.file.ref = file
logger.kafka.name = kafka
logger.kafka.level = info
logger.apache.name = org.apache
logger.apache.level = warn
LOG
}

up() {
  fetch
  if running_pid >/dev/null; then
    if answers; then log "already running on 127.0.0.1:$PORT"; return 0; fi
  elif answers; then
    log "a broker already answers on 127.0.0.1:$PORT (not started by this script); using it"
    return 0
  fi
  write_config
  if [ ! -f "$STATE_DIR/data/meta.properties" ]; then
    local cluster_id
    cluster_id="$(java -cp "$(java_cp)" kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n 1)"
    log "formatting storage (cluster $cluster_id)"
    local scram=() user
    if [ -n "$SCRAM_USERS" ]; then
      IFS=',' read -ra users <<<"$SCRAM_USERS"
      for user in "${users[@]}"; do
        scram+=(--add-scram "SCRAM-SHA-512=[name=${user%%=*},password=${user#*=}]")
      done
    fi
    java -cp "$(java_cp)" -Dlog4j2.configurationFile="$STATE_DIR/log4j2.properties" \
      kafka.tools.StorageTool format -t "$cluster_id" -c "$STATE_DIR/server.properties" "${scram[@]}" \
      >"$STATE_DIR/logs/format.log" 2>&1 || { cat "$STATE_DIR/logs/format.log" >&2; exit 1; }
  fi
  if ! running_pid >/dev/null; then
    log "starting broker on 127.0.0.1:$PORT (logs in $STATE_DIR/logs)"
    # setsid: the broker must outlive the make invocation that started it.
    setsid nohup java -Xms256m -Xmx"$HEAP" -XX:+UseG1GC -Djava.awt.headless=true \
      -Dlog4j2.configurationFile="$STATE_DIR/log4j2.properties" \
      -cp "$(java_cp)" kafka.Kafka "$STATE_DIR/server.properties" \
      >"$STATE_DIR/logs/stdout.log" 2>&1 </dev/null &
    echo $! >"$PID_FILE"
  fi
  local deadline=$((SECONDS + 90))
  until answers; do
    if ! running_pid >/dev/null; then
      log "broker exited during start-up; last lines of its log:"
      tail -n 30 "$STATE_DIR/logs/stdout.log" "$STATE_DIR/logs/server.log" >&2 2>/dev/null || true
      exit 1
    fi
    [ $SECONDS -lt $deadline ] || { log "broker did not answer within 90 s"; exit 1; }
    sleep 1
  done
  log "ready on 127.0.0.1:$PORT${SASL_SSL_PORT:+ (SASL_SSL on 127.0.0.1:$SASL_SSL_PORT)}"
}

down() { stop_service 60 broker; }

status() {
  if answers; then log "answering on 127.0.0.1:$PORT${pid:+ (pid $pid)}"; else log "not answering on 127.0.0.1:$PORT"; return 1; fi
}

case "${1:-}" in
  fetch) fetch ;;
  up) up ;;
  down) down ;;
  status) pid="$(running_pid || true)"; status ;;
  *) echo "usage: $0 fetch|up|down|status" >&2; exit 2 ;;
esac
