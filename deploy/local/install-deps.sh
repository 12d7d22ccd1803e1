#!/usr/bin/env bash
# Installs what a fresh machine lacks, for one purpose:
#   install-deps.sh demo   build and run the demo: a C toolchain and OpenSSL
#                          headers for librdkafka, Java and Maven for the
#                          local Kafka broker, kcat for broker checks, curl
#   install-deps.sh test   the above, plus what the tests and the static
#                          checks of the deployment files use: openssl (test
#                          certificates), chattr, promtool, docker-compose,
#                          and kustomize (built with Go), chromium (the
#                          example page's test in a real browser)
#   install-deps.sh bench  the demo's, plus wrk and oha (HTTP load
#                          generators for make bench-footer)
# Rust and Python are expected to be present. Idempotent: installs only what
# is missing.
set -euo pipefail
purpose="${1:-test}"
case "$purpose" in
  demo|test|bench) ;;
  *) echo "usage: install-deps.sh demo|test|bench" >&2; exit 2 ;;
esac

missing=()
need() { command -v "$1" >/dev/null 2>&1 || missing+=("$2"); }
need cc build-essential
need make make
need pkg-config pkg-config
need java openjdk-17-jre-headless
need mvn maven
need kcat kcat
need curl curl                    # deploy/local/s3.sh asks s3proxy whether it answers
pkg-config --exists openssl 2>/dev/null || missing+=(libssl-dev)
python3 -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3-venv)
if [ "$purpose" = test ]; then
  need openssl openssl              # certificates for the SASL_SSL test
  need chattr e2fsprogs             # the output-failure test makes the lake immutable
  need promtool prometheus          # validates deploy/prometheus
  need docker-compose docker-compose  # validates deploy/docker-compose.yml (no engine needed)
  need chromium chromium            # renders deploy/footer-example in tests/tests/footer_page.rs
fi
if [ "$purpose" = bench ]; then
  need wrk wrk                      # the footer API's throughput ceiling
fi

if [ ${#missing[@]} -gt 0 ]; then
  echo "[deps] installing: ${missing[*]}" >&2
  if [ "$(id -u)" != 0 ]; then SUDO=sudo; else SUDO=; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
command -v cargo >/dev/null || { echo "[deps] cargo not found: install Rust (https://rustup.rs)" >&2; exit 1; }

if [ "$purpose" = test ]; then
  # kustomize renders deploy/k8s for its static check; built once with Go
  # from the Go module proxy into the cache shared by clones.
  KUSTOMIZE_VERSION=v5.6.0
  TOOLS_BIN="${NEWSFLOW_CACHE:-$HOME/.cache/newsflow}/bin"
  if [ ! -x "$TOOLS_BIN/kustomize-$KUSTOMIZE_VERSION" ]; then
    command -v go >/dev/null || { echo "[deps] go not found: install Go to build kustomize" >&2; exit 1; }
    echo "[deps] building kustomize $KUSTOMIZE_VERSION into $TOOLS_BIN" >&2
    mkdir -p "$TOOLS_BIN"
    GOBIN="$TOOLS_BIN" go install "sigs.k8s.io/kustomize/kustomize/v5@$KUSTOMIZE_VERSION"
    mv "$TOOLS_BIN/kustomize" "$TOOLS_BIN/kustomize-$KUSTOMIZE_VERSION"
  fi
fi
if [ "$purpose" = bench ]; then
  # oha: latency at a fixed request rate (wrk has no rate limit); built
  # once from crates.io into the cache shared by clones.
  OHA_VERSION=1.16.0
  TOOLS_BIN="${NEWSFLOW_CACHE:-$HOME/.cache/newsflow}/bin"
  if [ ! -x "$TOOLS_BIN/oha-$OHA_VERSION" ]; then
    echo "[deps] building oha $OHA_VERSION into $TOOLS_BIN" >&2
    root="$(mktemp -d)"
    cargo install --quiet --locked --version "$OHA_VERSION" --root "$root" oha
    mkdir -p "$TOOLS_BIN"
    mv "$root/bin/oha" "$TOOLS_BIN/oha-$OHA_VERSION"
    rm -rf "$root"
  fi
fi
echo "[deps] ok ($purpose)" >&2
