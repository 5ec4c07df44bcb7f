#!/usr/bin/env bash
# Session 17 call B (nvidia-h200): RMSNorm in the GEMV prologue (wqkv, w13, output), the two-stage
# argmax; GPU tests, the fused decode step's launch shapes, the compiled bf16 step's kernels, decode
# tok/s in one process.
set -u
W=$OUT/s8b; mkdir -p "$W"
export PYTHONUNBUFFERED=1
deadline=$(( $(date +%s) + ${BUDGET:-480} ))
left() { echo $(( deadline - $(date +%s) )); }
step() { echo "+ $*"; timeout "$(left)" "$@"; echo "exit $? at $(date +%T)"; }
{
  step timeout 110 python3 -m pytest -q -p no:cacheprovider tests/test_kernels_gemv.py tests/test_generate.py tests/test_kv_attention.py -k "norm or argmax or fused or swiglu"
  step timeout 130 python3 benchmarks/long_context.py --fused_sweep 60,110,200 --fused_sweep_cache 208 --out "$W/fused_sweep.md"
  step timeout 70 python3 benchmarks/profile_decode_step.py --scheme none --layers 8 --kv_caches prefix --positions 200 --cache_size 208 --top 40 --steps 20
  step python3 benchmarks/decode_roofline.py --runs bf16:plain,bf16:ours,int8wo:ours,float8wo:ours,int4wo-128:ours,bf16:ours --repeats 2 --out "$W/roofline"
} > "$W/log.txt" 2>&1
tar czf "$OUT/s8b.tgz" -C "$OUT" s8b
grep -E "passed|failed|rror|^exit|^\+" "$W/log.txt" | cut -c1-200 | tail -n 30
grep -A8 "best fused" "$W/log.txt"
sed -n '/compiled:/,/per linear/p' "$W/log.txt" | grep -v " 0.000 ms" | cut -c1-150
grep -E "^\| [a-z]" "$W/log.txt" | cut -c1-250
