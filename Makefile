# The verbs a person types. `make demo` runs the whole job end to end on
# local defaults; `make test` runs every test against a real Kafka broker.

CARGO   ?= cargo
PYTHON  := $(CURDIR)/.venv/bin/python
SPARK_PYTHON := $(CURDIR)/.venv-spark/bin/python
KAFKA   := bash deploy/local/kafka.sh
S3      := bash deploy/local/s3.sh

.PHONY: help demo test upgrade-test checkpoint-fixture chaos fuzz bench bench-floors bench-footer bench-lake bench-ingest bench-compaction bench-commits probe-outage bench-micro build build-tests release deps deps-test deps-bench venv venv-spark kafka-up kafka-down kafka-status s3-up s3-down s3-status check-deploy lint fmt clippy reset clean

help: ## list every target with what it does (this text)
	@awk 'BEGIN { FS = ":[^#]*## " } /^[a-z0-9-]+:.*## / { printf "make %-14s %s\n", $$1, $$2 }' $(MAKEFILE_LIST)

deps: ## install what building and the demo need (toolchain, Java and Maven for Kafka, kcat)
	bash deploy/local/install-deps.sh demo

deps-test: ## install what the tests need on top (openssl, chattr, promtool, docker-compose, kustomize, chromium)
	bash deploy/local/install-deps.sh test

deps-bench: ## install the HTTP load generators of make bench-footer (wrk from Debian, oha from crates.io)
	bash deploy/local/install-deps.sh bench

venv: $(PYTHON) ## the Python environment of the readers (DuckDB, deltalake, Polars) in .venv
$(PYTHON): deploy/local/requirements.txt
	python3 -m venv .venv
	.venv/bin/pip install --quiet --disable-pip-version-check -r deploy/local/requirements.txt
	@touch $(PYTHON)

# Spark reads the tables in the tests too; its jars come from Maven Central.
venv-spark: $(SPARK_PYTHON) ## pyspark with Delta Lake in .venv-spark, and its jars (cached)
$(SPARK_PYTHON): deploy/local/requirements-spark.txt
	python3 -m venv .venv-spark
	.venv-spark/bin/pip install --quiet --disable-pip-version-check -r deploy/local/requirements-spark.txt
	bash deploy/local/spark.sh fetch
	@touch $(SPARK_PYTHON)

kafka-up: deps ## start the local single-node Kafka (KRaft) on 127.0.0.1:9092
	$(KAFKA) up

kafka-down: ## stop the local Kafka
	$(KAFKA) down

kafka-status: ## does the local Kafka answer?
	$(KAFKA) status

s3-up: deps ## start the local S3 API server (s3proxy) on 127.0.0.1:9000, bucket newsflow
	$(S3) up

s3-down: ## stop the local S3 API server
	$(S3) down

s3-status: ## does the local S3 API server answer?
	$(S3) status

build: ## debug build of the binaries
	$(CARGO) build --workspace --bins

# The tests run the binaries as processes; one cargo call builds those and
# every test target, so dependencies compile once with one feature set (the
# dev-dependencies add features to serde_json, regex and others, and a
# separate `cargo build --bins` compiled each of their dependents twice).
build-tests: ## debug build of the binaries and every test target, in one cargo call
	$(CARGO) build --workspace --all-targets

release: ## release build of the binaries
	$(CARGO) build --release --bins

demo: deps venv kafka-up release ## build, start Kafka, publish the seed article and a synthetic stream, count, print the footer
	bash deploy/local/demo.sh

# The binaries are built first because the end-to-end tests run them as
# separate processes (workers are killed, restarted and scaled like pods).
test: deps deps-test deps-bench venv venv-spark kafka-up s3-up build-tests check-deploy ## every test, against a real Kafka broker and S3 API server (started if none runs)
	NEWSFLOW_PYTHON=$(PYTHON) NEWSFLOW_SPARK_PYTHON=$(SPARK_PYTHON) $(CARGO) test --workspace

# A rolling upgrade from the previous release: its binaries are built from
# git (a worktree and a target folder under var/releases/, a cold build of
# a few minutes the first time), two of its workers count a stream, and
# are replaced one at a time by today's with SIGTERM mid-stream, old and new
# in one group in between; the footers must be exact. PREVIOUS_RELEASE is
# the last main before checkpoint format 5.
PREVIOUS_RELEASE ?= a8dfa39
upgrade-test: deps deps-test deps-bench venv kafka-up s3-up build-tests ## rolling upgrade from PREVIOUS_RELEASE with a mixed group, footers exact
	bin=$$(bash tests/upgrade/build-release.sh $(PREVIOUS_RELEASE)) && \
	  NEWSFLOW_PYTHON=$(PYTHON) NEWSFLOW_PREVIOUS_BIN_DIR=$$bin \
	  $(CARGO) test -p newsflow-e2e --test upgrade -- --ignored --nocapture a_rolling_upgrade

# Rewrites the golden lake of checkpoint format FIXTURE_FORMAT with the
# binaries of FIXTURE_COMMIT, the release that wrote that format: only when
# a format is retired from writing (each file must come from its release).
checkpoint-fixture: deps deps-test deps-bench venv kafka-up build-tests ## write tests/fixtures/checkpoints/format-FIXTURE_FORMAT with the release FIXTURE_COMMIT
	bin=$$(bash tests/upgrade/build-release.sh $(FIXTURE_COMMIT)) && \
	  NEWSFLOW_PYTHON=$(PYTHON) NEWSFLOW_BIN_DIR=$$bin NEWSFLOW_FIXTURE_FORMAT=$(FIXTURE_FORMAT) \
	  NEWSFLOW_FIXTURE_COMMIT=$(FIXTURE_COMMIT) \
	  $(CARGO) test -p newsflow-e2e --test upgrade -- --ignored write_checkpoint_fixture

# The crash-recovery tests (local and s3://) with a larger stream and many
# more kills than CI time allows, and the frozen-worker test with more
# freezes. They print each kill or freeze and how far the output had got.
CHAOS_EVENTS  ?= 1000000
CHAOS_KILLS   ?= 30
CHAOS_FREEZES ?= 10
chaos: deps deps-test deps-bench venv kafka-up s3-up build-tests ## crash tests at scale, local and s3:// (CHAOS_EVENTS, CHAOS_KILLS, CHAOS_FREEZES)
	NEWSFLOW_PYTHON=$(PYTHON) NEWSFLOW_CHAOS_EVENTS=$(CHAOS_EVENTS) NEWSFLOW_CHAOS_KILLS=$(CHAOS_KILLS) \
	  NEWSFLOW_CHAOS_FREEZES=$(CHAOS_FREEZES) \
	  $(CARGO) test -p newsflow-e2e --test crash_recovery --test delta_lake -- \
	  --nocapture --test-threads 1 kill_9 workers_frozen

# Benchmarks: release binaries against the local broker, medians of
# BENCH_RUNS runs, figures in var/bench/results.json. Not part of `make test`:
# a test never asserts a timing.
BENCH_EVENTS ?= 5000000
BENCH_RUNS   ?= 3
bench: deps venv kafka-up release ## throughput, CPU and memory on this machine (BENCH_EVENTS, BENCH_RUNS); see docs/benchmarks.md
	$(PYTHON) deploy/bench/bench.py --events $(BENCH_EVENTS) --runs $(BENCH_RUNS)

# The worker's work done by tools nobody here wrote (kcat, DuckDB, Arrow C++),
# per million of the same events, beside the worker: the floor under the
# cost per event. Figures in var/bench/floors.json.
FLOORS_EVENTS ?= 2000000
bench-floors: deps venv kafka-up release ## CPU per million events of delivery, decoding, the zstd Parquet archive and exact distinct by other tools, beside the worker (FLOORS_EVENTS)
	$(PYTHON) deploy/bench/floors.py --events $(FLOORS_EVENTS) --runs $(BENCH_RUNS)

# Flush and commit latency of one worker on a local path against s3:// (the
# local s3proxy), under a steady stream; figures in var/bench/lake_latency.json.
# The footer API on a table of FOOTER_ARTICLES articles (written without
# Kafka by newsflow-bench footer-table): start-up to ready (local and
# s3://), memory per million articles, lookups per second (wrk) and latency
# at a fixed rate (oha) beside DuckDB's point lookup on the same table, and
# freshness from a worker's commit to the API. Figures in
# var/bench/footer.json.
FOOTER_ARTICLES ?= 1000000
FOOTER_SECONDS  ?= 15
bench-footer: deps deps-bench venv kafka-up s3-up release ## footer API: lookups/s, p99 at 10k/s, memory per million, start-up, freshness (FOOTER_ARTICLES)
	$(PYTHON) deploy/bench/footer.py --articles $(FOOTER_ARTICLES) --seconds $(FOOTER_SECONDS)

LAKE_RATE    ?= 5000
LAKE_SECONDS ?= 60
bench-lake: deps venv kafka-up s3-up release ## flush and commit latency of one worker, local path against s3:// (LAKE_RATE, LAKE_SECONDS)
	$(PYTHON) deploy/bench/lake_latency.py --rate $(LAKE_RATE) --seconds $(LAKE_SECONDS)

# HTTP ingest probed as a hostile client would (release build, local broker):
# the 16 MiB worst body, 1,100 idle sockets against token holders, and the
# shutdown order. Figures as JSON on stdout.
bench-ingest: deps venv kafka-up release ## HTTP ingest against hostile clients: worst body, idle-socket flood, shutdown order
	$(PYTHON) deploy/bench/ingest_probe.py --binary target/release/newsflow-producer

COMPACTION_EVENTS ?= 5000000
bench-compaction: deps venv kafka-up release ## files, mean size and DuckDB footer reads before and after compaction of a lake of COMPACTION_EVENTS
	$(PYTHON) deploy/bench/compaction.py --events $(COMPACTION_EVENTS)

bench-commits: deps venv s3-up release ## Delta commit rate, lost races and latency against the number of concurrent writers, on s3proxy
	$(PYTHON) deploy/bench/commits.py

# A worker's readiness through an object-store outage (the store killed for
# 30 s, then frozen for 60 s), with the default flush interval; JSON on stdout.
probe-outage: deps venv kafka-up release ## seconds from an object-store outage to /readyz red, and from the repair to green
	$(PYTHON) deploy/bench/store_outage.py

bench-micro: ## Criterion micro-benchmarks of decoding, counting and Parquet encoding
	$(CARGO) bench -p newsflow-bench

# libFuzzer over decoding, validation and counting (fuzz/). Needs a nightly
# toolchain and cargo-fuzz, installed here if missing. Memory is capped so
# an unbounded allocation fails the run; findings land in fuzz/artifacts/.
FUZZ_SECONDS ?= 300
fuzz: ## fuzz decoding and validation with cargo-fuzz for FUZZ_SECONDS (300)
	rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
	command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz --locked
	bash fuzz/seed-corpus.sh
	cd fuzz && $(CARGO) +nightly fuzz run decode corpus/decode -- \
	  -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=1024 -malloc_limit_mb=256 -max_len=400000 -print_final_stats=1

# Static validation of the container and Prometheus files (no engine here).
check-deploy: deps-test venv ## validate the Dockerfile, compose file, Kubernetes manifests and alert rules
	PYTHON=$(PYTHON) bash deploy/check.sh

fmt: ## format the code
	$(CARGO) fmt --all

clippy: ## clippy with warnings denied
	$(CARGO) clippy --workspace --all-targets -- -D warnings

lint: ## cargo fmt --check and clippy with warnings denied (what CI runs)
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

reset: kafka-down s3-down ## stop Kafka and S3 and delete var/ (broker data, demo lake)
	rm -rf var

clean: reset ## reset, and delete the build output
	$(CARGO) clean
