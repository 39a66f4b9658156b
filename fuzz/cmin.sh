#!/usr/bin/env bash
# Merges what fuzzing kept (target/fuzz/corpus/<target>/) into the
# committed corpus (fuzz/corpus/<target>/), minimised by coverage with
# libFuzzer's -set_cover_merge=1 (a smaller set than the -merge=1 of
# `cargo fuzz cmin`), under nice.
#
#   fuzz/cmin.sh [TARGET...]                      (`make fuzz-cmin`)
set -euo pipefail
cd "$(dirname "$0")"
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(policy splice envelope scrub chain body path stream)
mkdir -p ../target/fuzz
nice -n 19 cargo +nightly fuzz build --sanitizer "${FUZZ_SANITIZER:-none}"
for t in "${targets[@]}"; do
  new=$(mktemp -d)
  extra=()
  [ -d "../target/fuzz/corpus/$t" ] && extra+=("../target/fuzz/corpus/$t")
  [ -d "seeds/$t" ] && extra+=("seeds/$t")
  nice -n 19 "target/x86_64-unknown-linux-gnu/release/$t" -set_cover_merge=1 "$new" "corpus/$t" "${extra[@]}" \
      > "../target/fuzz/cmin-$t.log" 2>&1
  rm -rf "corpus/$t"
  mv "$new" "corpus/$t"
  echo "$t: $(ls "corpus/$t" | wc -l) inputs, $(du -sk "corpus/$t" | cut -f1) KiB"
done
