#!/usr/bin/env bash
# `make demo`: the whole job end to end on local defaults. Publishes the
# seed article's events and a synthetic stream to the local broker, runs one
# worker until it has caught up, and prints the footer read back from the
# Delta tables with DuckDB's delta extension, then serves it over HTTP with
# newsflow-footer and fetches it with curl, as a news site would. Run it again: the same events are published
# again, and because redeliveries count once the footer does not change.
set -euo pipefail
cd "$(dirname "$0")/../.."

BIN=target/release
EVENTS="${DEMO_EVENTS:-300000}"
export NEWSFLOW__OUTPUT__URI="${NEWSFLOW__OUTPUT__URI:-./var/lake}"
step() { printf '\n\033[1m== %s ==\033[0m\n' "$*"; }

step "1/5 publishing the seed article's events (tests/fixtures/seed-article.ndjson)"
"$BIN/newsflow-producer" replay tests/fixtures/seed-article.ndjson

step "2/5 publishing ${EVENTS} synthetic events (newsflow-producer generate --seed 7)"
"$BIN/newsflow-producer" generate --seed 7 --count "$EVENTS"

step "3/5 counting: one worker of group 'newsflow' until it has caught up"
"$BIN/newsflow-consumer" run --exit-when-caught-up --progress-every 2s

step "4/5 reading the Delta tables back with DuckDB (${NEWSFLOW__OUTPUT__URI})"
.venv/bin/python deploy/local/report.py "$NEWSFLOW__OUTPUT__URI" tests/fixtures/seed-article.txt

step "5/5 serving the footer over HTTP (newsflow-footer serve on ${DEMO_FOOTER_LISTEN:=127.0.0.1:8081})"
SEED=politik.2026-11-01.russland-nordkorea-buendnis
FOOTER_METRICS="${DEMO_FOOTER_METRICS:-127.0.0.1:9466}"
NEWSFLOW__FOOTER__LISTEN="$DEMO_FOOTER_LISTEN" NEWSFLOW__METRICS__LISTEN="$FOOTER_METRICS" \
  "$BIN/newsflow-footer" serve 2>var/demo-footer.log &
footer_pid=$!
trap 'kill "$footer_pid" 2>/dev/null || true' EXIT
for _ in $(seq 1 300); do
  curl -fsS "http://$FOOTER_METRICS/readyz" >/dev/null 2>&1 && break
  kill -0 "$footer_pid" 2>/dev/null || { echo "newsflow-footer exited; see var/demo-footer.log" >&2; exit 1; }
  sleep 0.1
done
echo "\$ curl http://$DEMO_FOOTER_LISTEN/v1/articles/$SEED/footer"
curl -fsS "http://$DEMO_FOOTER_LISTEN/v1/articles/$SEED/footer"; echo
echo
echo "\$ curl http://$DEMO_FOOTER_LISTEN/v1/articles/$SEED/footer.html"
curl -fsS "http://$DEMO_FOOTER_LISTEN/v1/articles/$SEED/footer.html"
echo
.venv/bin/python - "$NEWSFLOW__OUTPUT__URI" "http://$DEMO_FOOTER_LISTEN" "$SEED" <<'PY'
import json, sys, urllib.request
lake, api, seed = sys.argv[1:]
served = json.load(urllib.request.urlopen(f"{api}/v1/articles/{seed}/footer"))
sys.path.insert(0, "deploy/local")
from footer_sql import footer_from_duckdb
sql = footer_from_duckdb(lake, seed)
api_counts = (served["confirming_sources"], served["social_comments"], served["forum_posts"])
print(f"  {'the footer API, table version ' + str(served['table_version']) + ':':<40}{' / '.join(map(str, api_counts))}")
print(f"  {'DuckDB over the Delta tables:':<40}{' / '.join(map(str, sql))}")
sys.exit(0 if api_counts == sql else f"the API and DuckDB disagree: {api_counts} != {sql}")
PY
echo
echo "  The example page that puts it under the story: python3 -m http.server -d deploy/footer-example 8000,"
echo "  then open http://127.0.0.1:8000/?api=http://$DEMO_FOOTER_LISTEN with NEWSFLOW__FOOTER__CORS_ORIGINS=http://127.0.0.1:8000."
