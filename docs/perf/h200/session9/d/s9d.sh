#!/usr/bin/env bash
# Session 18 call D (nvidia-h200): int4wo-128 ours (PDL for the int4 GEMVs and the decode step) at other
# int4 GEMV launch shapes, one process each (--gemv_configs compiles afresh), the current entry first and last.
set -u
W=$OUT/s9d; mkdir -p "$W"
export PYTHONUNBUFFERED=1
deadline=$(( $(date +%s) + ${BUDGET:-540} ))
left() { echo $(( deadline - $(date +%s) )); }
step() { echo "+ $*"; timeout "$(left)" "$@"; echo "exit $? at $(date +%T)"; }
{
  for c in 32_512_2_2_1_1 32_1024_4_2_1_1 16_512_2_2_1_1 32_512_4_2_1_1 64_512_4_2_1_1 32_256_2_2_1_1 16_1024_2_2_1_1 32_512_2_2_1_1; do
    step python3 benchmarks/decode_roofline.py --runs int4wo-128:ours --repeats 2 --gemv_configs .device/s9d/int4_$c.json --out "$W/$c"
  done
} > "$W/log.txt" 2>&1
tar czf "$OUT/s9d.tgz" -C "$OUT" s9d
grep -E "rror|^exit|^\+|^GEMV" "$W/log.txt" | cut -c1-200 | tail -n 30
grep -E "^\| [a-z]" "$W/log.txt" | cut -c1-250
