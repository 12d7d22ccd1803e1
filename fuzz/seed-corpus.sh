#!/usr/bin/env bash
# Builds the seed corpus of the `decode` target from the test fixtures:
# every event of the seed article (unkeyed, and keyed by its article_id)
# plus a few hostile shapes. Generated, not committed.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
corpus="$here/corpus/decode"
mkdir -p "$corpus"
n=0
while IFS= read -r line; do
  [ -n "$line" ] || continue
  n=$((n + 1))
  printf '\0%s' "$line" >"$corpus/fixture-$n-unkeyed"
  id="$(printf '%s' "$line" | sed -n 's/.*"article_id":"\([^"]*\)".*/\1/p')"
  len=${#id}
  if [ "$len" -le 128 ] && [ "$len" -gt 0 ]; then
    { printf "\\$(printf '%03o' "$len")"; printf '%s%s' "$id" "$line"; } >"$corpus/fixture-$n-keyed"
  fi
done <"$here/../tests/fixtures/seed-article.ndjson"
printf '\0[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[' >"$corpus/deep"
printf '\0{"a":1,"a":2}' >"$corpus/duplicate"
printf '\0\xff\xfe' >"$corpus/not-utf8"
echo "[fuzz] seed corpus: $(ls "$corpus" | wc -l) inputs in $corpus" >&2
