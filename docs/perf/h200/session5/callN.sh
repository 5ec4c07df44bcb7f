#!/usr/bin/env bash
# Session 14 call N (nvidia-h200-x2): the final code's GPU tests, and bf16 with split-K.
# GPU0: the GPU tests of the kernels and of generate.
# GPU1: gemv_sweep of bf16 (our rowwise kernel with split-K off and on, against cuBLAS).
set -u
W=$OUT/n; mkdir -p "$W"
export PYTHONUNBUFFERED=1 NCCL_NVLS_ENABLE=0
deadline=$(( $(date +%s) + ${BUDGET:-300} ))
left() { echo $(( deadline - $(date +%s) )); }
step() { echo "+ $*"; timeout "$(left)" "$@"; echo "exit $? at $(date +%T)"; }
(
  export CUDA_VISIBLE_DEVICES=0
  step python3 -m pytest -q -p no:cacheprovider tests/test_kernels_gemv.py tests/test_kv_attention.py tests/test_generate.py
) > "$W/gpu0.log" 2>&1 &
(
  export CUDA_VISIBLE_DEVICES=1
  step python3 benchmarks/gemv_sweep.py --kinds bfloat16 --out "$W/sweep_bf16"
) > "$W/gpu1.log" 2>&1 &
wait
tar czf "$OUT/n.tgz" -C "$OUT" n
echo "== gpu0"; grep -E "passed|failed|^exit|rror|Killed" "$W/gpu0.log" | cut -c1-200 | tail -n 20
echo "== gpu1"; grep -E "^  |^exit|^NVIDIA|GEMV_CONFIGS =|FAILED|MISMATCH" "$W/gpu1.log" | cut -c1-250 | tail -n 20
