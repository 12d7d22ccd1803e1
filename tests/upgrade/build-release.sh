#!/usr/bin/env bash
# Builds the binaries of an earlier commit (a release) in a git worktree
# under var/releases/, with a target folder of its own so that today's
# build is left alone, and prints the folder that holds them. Used by
# `make upgrade-test` and `make checkpoint-fixture`.
#
#   build-release.sh COMMIT
set -euo pipefail

commit="${1:?usage: build-release.sh COMMIT}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
rev="$(git -C "$root" rev-parse --short=12 "$commit^{commit}")"
dir="$root/var/releases/$rev"

git -C "$root" worktree prune
if [ ! -f "$dir/src/Cargo.toml" ]; then
  echo "[release] checking out $rev in $dir/src" >&2
  git -C "$root" worktree add --detach "$dir/src" "$rev" >&2
fi
echo "[release] building $rev (a cold build takes a few minutes)" >&2
CARGO_TARGET_DIR="$dir/target" cargo build --quiet --manifest-path "$dir/src/Cargo.toml" --bins >&2
echo "$dir/target/debug"
