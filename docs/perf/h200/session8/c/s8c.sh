#!/usr/bin/env bash
# Session 17 call C (nvidia-h200): the fused decode step as one program per KV head (the in-kernel merge
# of splits dropped), RMSNorm in the GEMV only for int4 by default; GPU tests, the fused step's launch
# shapes, the compiled steps' kernels (bf16 and int4).
set -u
W=$OUT/s8c; mkdir -p "$W"
export PYTHONUNBUFFERED=1
deadline=$(( $(date +%s) + ${BUDGET:-300} ))
left() { echo $(( deadline - $(date +%s) )); }
step() { echo "+ $*"; timeout "$(left)" "$@"; echo "exit $? at $(date +%T)"; }
{
  step timeout 120 python3 -m pytest -q -p no:cacheprovider tests/test_kernels_gemv.py tests/test_generate.py tests/test_kv_attention.py -k "norm or argmax or fused or swiglu or compiled or replay"
  step timeout 100 python3 benchmarks/long_context.py --fused_sweep 60,110,200 --fused_sweep_cache 208 --out "$W/fused_sweep.md"
  step timeout 40 python3 benchmarks/profile_decode_step.py --scheme none --layers 8 --kv_caches prefix --positions 200 --cache_size 208 --top 40 --steps 20
  step python3 benchmarks/profile_decode_step.py --scheme int4 --layers 8 --kv_caches prefix --positions 200 --cache_size 208 --top 40 --steps 20
} > "$W/log.txt" 2>&1
tar czf "$OUT/s8c.tgz" -C "$OUT" s8c
grep -E "passed|failed|rror|^exit|^\+" "$W/log.txt" | cut -c1-200 | tail -n 30
grep -A8 "best fused" "$W/log.txt"
sed -n '/compiled:/,/per linear/p' "$W/log.txt" | grep -v " 0.000 ms" | cut -c1-150
