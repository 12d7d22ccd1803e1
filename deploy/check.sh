#!/usr/bin/env bash
# Static checks of the deployment files with tools that run without a
# container engine or a cluster: `docker-compose config` validates the
# Compose file; promtool the Prometheus configuration, the alert rules and
# their unit tests; kustomize renders the Kubernetes overlay and
# deploy/k8s/check.py validates every object; the Grafana dashboard is
# checked for structure; and the Dockerfile for its stages. Prints one line
# per check and a closing "N passed, N failed".
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
check "promtool check rules (deploy/prometheus/alerts.yml)" promtool check rules deploy/prometheus/alerts.yml
check "promtool test rules (deploy/prometheus/alerts.test.yml)" promtool test rules deploy/prometheus/alerts.test.yml
PYTHON="${PYTHON:-.venv/bin/python}"
KUSTOMIZE="${NEWSFLOW_CACHE:-$HOME/.cache/newsflow}/bin/kustomize-v5.6.0"
k8s_overlay_is_valid() {
  local rendered
  rendered="$("$KUSTOMIZE" build deploy/k8s/overlays/example)" || return 1
  printf '%s\n' "$rendered" | "$PYTHON" deploy/k8s/check.py
}
check "kustomize build + validate (deploy/k8s/overlays/example)" k8s_overlay_is_valid
dockerfile_is_sound() {
  local f=deploy/docker/Dockerfile
  [ "$(grep -c '^FROM ' "$f")" -ge 3 ] || { echo "not multi-stage"; return 1; }
  grep -q '^USER [1-9]' "$f" || { echo "no non-root USER"; return 1; }
  for target in build runtime consumer producer footer; do
    grep -qE "^FROM .* AS $target\$" "$f" || { echo "no stage $target"; return 1; }
  done
  grep -q 'ENTRYPOINT \["/usr/local/bin/newsflow-consumer"\]' "$f" || { echo "consumer entrypoint missing"; return 1; }
  grep -q 'ENTRYPOINT \["/usr/local/bin/newsflow-producer"\]' "$f" || { echo "producer entrypoint missing"; return 1; }
  grep -q 'ENTRYPOINT \["/usr/local/bin/newsflow-footer"\]' "$f" || { echo "footer entrypoint missing"; return 1; }
  # The lake's CronJob runs newsflow-lake from the consumer image.
  sed -n '/AS consumer$/,/^FROM /p' "$f" | grep -q 'newsflow-lake' || { echo "consumer image lacks newsflow-lake"; return 1; }
  # Every path the build copies must exist in the repository.
  grep -q '^COPY \. \.' "$f" && [ -f Cargo.lock ] || { echo "build context incomplete"; return 1; }
}
check "Dockerfile structure (deploy/docker/Dockerfile)" dockerfile_is_sound
echo "deploy: $passed passed, $failed failed"
[ "$failed" = 0 ]
