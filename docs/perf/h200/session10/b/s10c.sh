#!/usr/bin/env bash
# Tenth H200 session, call B (nvidia-h200): the new int4 v2 loop at launch shapes without the prefetch, one process each,
# inductor's caches off; the no-prefetch default candidate (32,512,2) first and last, and the committed entry once.
set -u
W=$OUT/s10c; mkdir -p "$W"
export PYTHONUNBUFFERED=1 TORCHINDUCTOR_FX_GRAPH_CACHE=0 TORCHINDUCTOR_AUTOGRAD_CACHE=0
deadline=$(( $(date +%s) + ${BUDGET:-560} ))
left() { echo $(( deadline - $(date +%s) )); }
step() { echo "+ $*"; timeout "$(left)" "$@"; echo "exit $? at $(date +%T)"; }
{
  for c in 32_512_2_2_0_1 32_256_2_2_0_1 64_512_2_2_0_1 32_1024_4_2_0_1 16_512_1_2_0_1 32_512_4_2_0_1 64_256_2_2_0_1 16_256_1_2_0_1 32_512_2_2_1_1 32_512_2_2_0_1; do
    echo "config $c"
    step python3 benchmarks/decode_roofline.py --runs int4wo-128:ours,int4wo-128:ours-serial --repeats 2 --gemv_configs .device/s10/int4_$c.json --out "$W/$c"
  done
} > "$W/log.txt" 2>&1
tar czf "$OUT/s10c.tgz" -C "$OUT" s10c
grep -E "passed|failed|rror|^exit|^\+" "$W/log.txt" | cut -c1-200 | tail -n 30
grep -E "^config|^\| int4" "$W/log.txt" | cut -c1-140
