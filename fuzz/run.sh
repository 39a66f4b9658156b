#!/usr/bin/env bash
# Runs the fuzz targets, one after the other, each for SECONDS (default
# 60) under `nice -n 19`, and prints executions per target.
#
#   fuzz/run.sh [SECONDS] [TARGET...]       (`make fuzz FUZZ_SECONDS=...`)
#
# FUZZ_RUNS (default unset): stop a target after that many executions
# instead (SECONDS stays the cap): `make fuzz FUZZ_RUNS=10000000
# FUZZ_SECONDS=3600` is the acceptance campaign of docs/reliability.md.
#
# Results are appended to target/fuzz/summary.txt (two runs may share it).
# New inputs go to target/fuzz/corpus/<target>/ (the committed corpus in
# fuzz/corpus/<target>/ is read, never written: `make fuzz-cmin` merges
# what is worth keeping). A failing input lands in fuzz/artifacts/<target>/;
# copy it to fuzz/regressions/<target>/ with the fix so `make test` replays
# it. Exits non-zero if any target found a failure.
#
# FUZZ_TIMEOUT (default 10 s per input): an input slower than this is a
# failure (a hang: in Envoy it would stall the worker). Raise it only as
# far as needed, e.g. 60 on a loaded machine; an hour-long timeout once hid
# a real endless loop for an hour (docs/reliability.md, finding 6).
#
# FUZZ_SANITIZER (default `none`): the code under test is safe Rust (no
# `unsafe` in core/), so AddressSanitizer finds nothing a panic would not,
# at a third of the speed; `FUZZ_SANITIZER=address` turns it back on.
set -uo pipefail
cd "$(dirname "$0")"
seconds=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(policy splice envelope scrub chain body path stream)
out=../target/fuzz
mkdir -p "$out"
summary="$out/summary.txt"
echo "# $(date -u +%FT%TZ) run.sh $seconds ${targets[*]} (git $(git rev-parse --short HEAD))" >> "$summary"
status=0
for t in "${targets[@]}"; do
  case $t in
    policy) dict=(-dict=dicts/policy.dict) ;;
    splice|envelope|body) dict=(-dict=dicts/json.dict) ;;
    *) dict=() ;;
  esac
  mkdir -p "$out/corpus/$t" "artifacts/$t"
  echo "== $t: ${seconds}s"
  nice -n 19 cargo +nightly fuzz run --sanitizer "${FUZZ_SANITIZER:-none}" "$t" "$out/corpus/$t" "corpus/$t" -- \
      -max_total_time="$seconds" ${FUZZ_RUNS:+-runs=$FUZZ_RUNS} -timeout=${FUZZ_TIMEOUT:-10} -rss_limit_mb=2048 -print_final_stats=1 \
      "${dict[@]}" > "$out/$t.log" 2>&1
  rc=$?
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$out/$t.log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$out/$t.log" | tail -1)
  if [ $rc -ne 0 ]; then
    status=1
    line="$t: FAILED after ${runs:-?} executions (see $out/$t.log, fuzz/artifacts/$t/)"
    grep -m1 -A2 "panicked" "$out/$t.log" || tail -20 "$out/$t.log"
  else
    secs=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$out/$t.log" | tail -1)
    line="$t: ${runs:-?} executions in ${secs:-$seconds}s (${rate:-?}/s), no failure, $(date -u +%FT%TZ)"
  fi
  echo "$line" | tee -a "$summary"
done
echo "summary in $summary"
exit $status
