#!/usr/bin/env bash
# Session 15 call R (nvidia-h200-x2): the decode step's kernels, in-step, for int8, float8 and int4
# (today's GEMV_CONFIGS): why does float8wo decode 3% slower than int8wo when its GEMV loop is as
# cheap per byte under the device's Triton 3.6?
set -u
W=$OUT/r; mkdir -p "$W"
export PYTHONUNBUFFERED=1
deadline=$(( $(date +%s) + ${BUDGET:-300} ))
left() { echo $(( deadline - $(date +%s) )); }
step() { echo "+ $*"; timeout "$(left)" "$@"; echo "exit $? at $(date +%T)"; }
(
  export CUDA_VISIBLE_DEVICES=0
  for s in int8 float8; do
    step python3 benchmarks/profile_decode_step.py --scheme $s --layers 8 --kv_caches prefix --positions 200 --cache_size 208 --top 14 --steps 20
  done
) > "$W/gpu0.log" 2>&1 &
(
  export CUDA_VISIBLE_DEVICES=1
  step python3 benchmarks/profile_decode_step.py --scheme int4 --layers 8 --kv_caches prefix --positions 200 --cache_size 208 --top 14 --steps 20
) > "$W/gpu1.log" 2>&1 &
wait
grep -E "^==|^ +[0-9.]+ ms|^exit|^\+" "$W/gpu0.log" "$W/gpu1.log" | grep -v "x  0 \|cuda[A-Z]\|cuLaunch" | cut -c1-190
