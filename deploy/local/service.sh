# Shared by the local service scripts (kafka.sh, s3.sh), which source it
# after setting PID_FILE: whether the process they started still runs,
# and stopping it.

# Prints the pid in $PID_FILE if that process is alive; fails otherwise.
running_pid() {
  [ -f "$PID_FILE" ] || return 1
  local pid; pid="$(cat "$PID_FILE")"
  kill -0 "$pid" 2>/dev/null && echo "$pid"
}

# Stops the process in $PID_FILE: SIGTERM, up to $1 seconds to exit, then
# SIGKILL. $2 names it in the log.
stop_service() {
  local wait="$1" name="$2" pid
  if pid="$(running_pid)"; then
    log "stopping $name (pid $pid)"
    kill "$pid"
    for _ in $(seq 1 "$wait"); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
    kill -9 "$pid" 2>/dev/null || true
  else
    log "not running"
  fi
  rm -f "$PID_FILE"
}
