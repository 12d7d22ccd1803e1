#!/usr/bin/env bash
# Static checks of the deployment files with tools that run without a
# container engine: `docker-compose config` validates the Compose file,
# promtool the Prometheus configuration, and a structural check of the
# Dockerfile (multi-stage, non-root, both binaries). Prints one line per
# check and a closing "N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/.."
passed=0; failed=0
check() {
  local name="$1"; shift
  if out=$("$@" 2>&1); then passed=$((passed+1)); echo "ok    $name"
  else failed=$((failed+1)); echo "FAIL  $name"; echo "$out" | sed 's/^/      /'; fi
}
check "docker-compose config (deploy/docker-compose.yml)" docker-compose -f deploy/docker-compose.yml config -q
check "promtool check config (deploy/prometheus/prometheus.yml)" promtool check config deploy/prometheus/prometheus.yml
dockerfile_is_sound() {
  local f=deploy/docker/Dockerfile
  [ "$(grep -c '^FROM ' "$f")" -ge 3 ] || { echo "not multi-stage"; return 1; }
  grep -q '^USER [1-9]' "$f" || { echo "no non-root USER"; return 1; }
  for target in build runtime consumer producer; do
    grep -qE "^FROM .* AS $target\$" "$f" || { echo "no stage $target"; return 1; }
  done
  grep -q 'ENTRYPOINT \["/usr/local/bin/newsflow-consumer"\]' "$f" || { echo "consumer entrypoint missing"; return 1; }
  grep -q 'ENTRYPOINT \["/usr/local/bin/newsflow-producer"\]' "$f" || { echo "producer entrypoint missing"; return 1; }
  # Every path the build copies must exist in the repository.
  grep -q '^COPY \. \.' "$f" && [ -f Cargo.lock ] || { echo "build context incomplete"; return 1; }
}
check "Dockerfile structure (deploy/docker/Dockerfile)" dockerfile_is_sound
echo "deploy: $passed passed, $failed failed"
[ "$failed" = 0 ]
