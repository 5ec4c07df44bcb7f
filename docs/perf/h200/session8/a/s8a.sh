#!/usr/bin/env bash
# Session 17 call A (nvidia-h200): the fused decode step (RoPE + cache write + attention in one kernel,
# llama/kernels/decode_attention.py) and SwiGLU in w13's GEMV epilogue: GPU tests, the compiled bf16
# step's kernels, then decode tok/s in one process.
set -u
W=$OUT/s8a; mkdir -p "$W"
export PYTHONUNBUFFERED=1
deadline=$(( $(date +%s) + ${BUDGET:-500} ))
left() { echo $(( deadline - $(date +%s) )); }
step() { echo "+ $*"; timeout "$(left)" "$@"; echo "exit $? at $(date +%T)"; }
nvidia-smi --query-gpu=name,clocks.max.sm,clocks.max.mem --format=csv > "$W/gpu.txt" 2>&1
{
  step timeout 120 python3 -m pytest -q -p no:cacheprovider tests/test_kv_attention.py tests/test_kernels_gemv.py -k "gpu or fused or swiglu or compiled or replay"
  step timeout 100 python3 benchmarks/profile_decode_step.py --scheme none --layers 8 --kv_caches prefix --positions 200 --cache_size 208 --top 40 --steps 20
  step python3 benchmarks/decode_roofline.py --runs bf16:plain,bf16:ours,int8wo:ours,float8wo:ours,int4wo-128:ours --repeats 2 --out "$W/roofline"
} > "$W/log.txt" 2>&1
tar czf "$OUT/s8a.tgz" -C "$OUT" s8a
grep -E "passed|failed|error|Error|^exit|^\+" "$W/log.txt" | cut -c1-200 | tail -n 30
sed -n '/compiled:/,/per linear/p' "$W/log.txt" | grep -v " 0.000 ms" | cut -c1-150
grep -E "^\| [a-z]" "$W/log.txt" | cut -c1-250
