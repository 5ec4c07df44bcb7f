#!/usr/bin/env bash
# Session 13 call F (nvidia-h200-x2).
# GPU0: GEMV sweep of int8 (v1, new v2) and int4 (v1, v2 with the zero term after the loop), then
#       decode_roofline with its pick: int8wo and int4wo-128, ours and plain, in one process.
# GPU1: the kernel tests on the GPU, the short-context step profile, then bf16/float8 rows.
set -u
W=$OUT/f; mkdir -p "$W"
export PYTHONUNBUFFERED=1 NCCL_NVLS_ENABLE=0
deadline=$(( $(date +%s) + ${BUDGET:-500} ))
left() { echo $(( deadline - $(date +%s) )); }
step() { echo "+ $*"; timeout "$(left)" "$@"; echo "exit $? at $(date +%T)"; }
(
  export CUDA_VISIBLE_DEVICES=0
  step python3 benchmarks/gemv_sweep.py --kinds int8,int4 --out "$W/gemv_sweep"
  step python3 benchmarks/decode_roofline.py --gemv_configs "$W/gemv_sweep/gemv_configs.json" --runs int8wo:ours,int4wo-128:ours,int8wo:plain,int4wo-128:plain --repeats 2 --out "$W/roofline_q"
) > "$W/gpu0.log" 2>&1 &
(
  export CUDA_VISIBLE_DEVICES=1
  step python3 -m pytest -q -p no:cacheprovider tests/test_kernels_gemv.py tests/test_kv_attention.py tests/test_generate.py -x
  step python3 benchmarks/profile_decode_step.py --scheme int8 --kv_caches prefix --positions 200 --cache_size 208 --top 16 --steps 20
  step python3 benchmarks/decode_roofline.py --runs bf16:ours,bf16:plain,float8wo:ours --repeats 2 --out "$W/roofline_bf16"
) > "$W/gpu1.log" 2>&1 &
wait
tar czf "$OUT/f.tgz" -C "$OUT" f
echo "== gpu0"; cat "$W/gemv_sweep/summary.txt" 2>/dev/null | cut -c1-220; grep -v -E "Warn|warn|^ |^/|^W1|^\{" "$W/gpu0.log" | tail -n 22
echo "== gpu1"; grep -E "passed|failed|^==|^  +[0-9]|^exit|^\||error" "$W/gpu1.log" | cut -c1-160 | tail -n 40
