#!/usr/bin/env bash
# Local S3 API server (s3proxy, filesystem backend) for tests and the demo:
# a real S3 implementation that honours conditional writes (If-None-Match
# and If-Match) atomically, which the Delta commits rely on.
#
#   s3.sh fetch   download the s3proxy jar from Maven Central (cached)
#   s3.sh up      fetch if needed, start on 127.0.0.1:$S3_PORT, create the bucket
#   s3.sh down    stop the server started by `up`
#   s3.sh status  say whether it answers
#   s3.sh env     print the variables a client needs (AWS_*), for `eval`
#
# No Docker: the jar runs on the machine's Java 17, cached outside the
# repository (in $NEWSFLOW_CACHE, default ~/.cache/newsflow); its data lives
# under var/s3proxy/ of the repository. Idempotent.
set -euo pipefail

S3PROXY_VERSION="${S3PROXY_VERSION:-4.1.0}"
CACHE_DIR="${NEWSFLOW_CACHE:-$HOME/.cache/newsflow}"
JAR="$CACHE_DIR/s3proxy-$S3PROXY_VERSION/s3proxy-$S3PROXY_VERSION-jar-with-dependencies.jar"
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
STATE_DIR="${S3_STATE_DIR:-$REPO_ROOT/var/s3proxy}"
PORT="${S3_PORT:-9000}"
BUCKET="${S3_BUCKET:-newsflow}"
# Local credentials only: this server listens on loopback and holds test data.
ACCESS_KEY="${S3_ACCESS_KEY:-newsflow}"
SECRET_KEY="${S3_SECRET_KEY:-newsflow-local-secret}"
PID_FILE="$STATE_DIR/s3proxy.pid"

# shellcheck source=deploy/local/service.sh
. "$(dirname "${BASH_SOURCE[0]}")/service.sh"

log() { printf '[s3] %s\n' "$*" >&2; }

fetch() {
  if [ -f "$JAR" ]; then return 0; fi
  command -v mvn >/dev/null || { log "mvn not found: install Maven (apt-get install maven)"; exit 1; }
  log "downloading s3proxy $S3PROXY_VERSION from Maven Central into $(dirname "$JAR")"
  mkdir -p "$(dirname "$JAR")"
  mvn -q -B dependency:copy \
    -Dartifact="org.gaul:s3proxy:$S3PROXY_VERSION:jar:jar-with-dependencies" \
    -DoutputDirectory="$(dirname "$JAR")" >&2
  [ -f "$JAR" ] || { log "the jar did not arrive"; exit 1; }
}

answers() {
  # Any HTTP answer means the server is up; an anonymous request gets 403.
  curl -s -o /dev/null -m 2 "http://127.0.0.1:$PORT/" 2>/dev/null
}


up() {
  fetch
  mkdir -p "$STATE_DIR/data/$BUCKET" "$STATE_DIR/logs"
  if running_pid >/dev/null && answers; then log "already running on 127.0.0.1:$PORT"; return 0; fi
  cat >"$STATE_DIR/s3proxy.properties" <<PROPS
s3proxy.endpoint=http://127.0.0.1:$PORT
s3proxy.authorization=aws-v2-or-v4
s3proxy.identity=$ACCESS_KEY
s3proxy.credential=$SECRET_KEY
jclouds.provider=filesystem-nio2
jclouds.filesystem.basedir=$STATE_DIR/data
PROPS
  log "starting s3proxy on 127.0.0.1:$PORT (bucket $BUCKET, logs in $STATE_DIR/logs)"
  setsid nohup java -Xms64m -Xmx512m -jar "$JAR" --properties "$STATE_DIR/s3proxy.properties" \
    >"$STATE_DIR/logs/stdout.log" 2>&1 </dev/null &
  echo $! >"$PID_FILE"
  local deadline=$((SECONDS + 60))
  until answers; do
    if ! running_pid >/dev/null; then
      log "s3proxy exited during start-up; last lines of its log:"
      tail -n 30 "$STATE_DIR/logs/stdout.log" >&2 || true
      exit 1
    fi
    [ $SECONDS -lt $deadline ] || { log "s3proxy did not answer within 60 s"; exit 1; }
    sleep 0.5
  done
  log "ready on 127.0.0.1:$PORT"
}

down() { stop_service 15 s3proxy; }

print_env() {
  cat <<VARS
export AWS_ACCESS_KEY_ID=$ACCESS_KEY
export AWS_SECRET_ACCESS_KEY=$SECRET_KEY
export AWS_REGION=us-east-1
export AWS_ENDPOINT_URL=http://127.0.0.1:$PORT
export AWS_ALLOW_HTTP=true
VARS
}

case "${1:-}" in
  fetch) fetch ;;
  up) up ;;
  down) down ;;
  status) if answers; then log "answering on 127.0.0.1:$PORT"; else log "not answering on 127.0.0.1:$PORT"; exit 1; fi ;;
  env) print_env ;;
  *) echo "usage: $0 fetch|up|down|status|env" >&2; exit 2 ;;
esac
