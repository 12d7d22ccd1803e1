#!/usr/bin/env bash
# `make demo`: the whole job end to end on local defaults. Publishes the
# seed article's events and a synthetic stream to the local broker, runs one
# worker until it has caught up, and prints the footer read back from the
# Delta tables with DuckDB's delta extension. Run it again: the same events are published
# again, and because redeliveries count once the footer does not change.
set -euo pipefail
cd "$(dirname "$0")/../.."

BIN=target/release
EVENTS="${DEMO_EVENTS:-300000}"
export NEWSFLOW__OUTPUT__URI="${NEWSFLOW__OUTPUT__URI:-./var/lake}"
step() { printf '\n\033[1m== %s ==\033[0m\n' "$*"; }

step "1/4 publishing the seed article's events (tests/fixtures/seed-article.ndjson)"
"$BIN/newsflow-producer" replay tests/fixtures/seed-article.ndjson

step "2/4 publishing ${EVENTS} synthetic events (newsflow-producer generate --seed 7)"
"$BIN/newsflow-producer" generate --seed 7 --count "$EVENTS"

step "3/4 counting: one worker of group 'newsflow' until it has caught up"
"$BIN/newsflow-consumer" run --exit-when-caught-up --progress-every 2s

step "4/4 reading the Delta tables back with DuckDB (${NEWSFLOW__OUTPUT__URI})"
.venv/bin/python deploy/local/report.py "$NEWSFLOW__OUTPUT__URI" tests/fixtures/seed-article.txt
