#!/usr/bin/env bash
# Session 14 call J (nvidia-h200-x2): the int4 v3 kernel (lanes layout).
# GPU0: gemv_sweep of int4 (v1, v2, v3), then decode_roofline int4wo-128 ours with the sweep's pick.
# GPU1: the GEMV kernel tests on CUDA, then decode_roofline int4wo-128 ours with a fixed v3 guess.
set -u
W=$OUT/j; mkdir -p "$W"
export PYTHONUNBUFFERED=1 NCCL_NVLS_ENABLE=0
deadline=$(( $(date +%s) + ${BUDGET:-480} ))
left() { echo $(( deadline - $(date +%s) )); }
step() { echo "+ $*"; timeout "$(left)" "$@"; echo "exit $? at $(date +%T)"; }
(
  export CUDA_VISIBLE_DEVICES=0
  step python3 benchmarks/gemv_sweep.py --kinds int4 --out "$W/sweep"
  step python3 benchmarks/decode_roofline.py --gemv_configs "$W/sweep/gemv_configs.json" --runs int4wo-128:ours --repeats 2 --out "$W/roofline_swept"
) > "$W/gpu0.log" 2>&1 &
(
  export CUDA_VISIBLE_DEVICES=1
  step python3 -m pytest -q -p no:cacheprovider tests/test_kernels_gemv.py -x
  echo '{"int4": [8, 4096, 1, 3, 16]}' > "$W/guess.json"
  step python3 benchmarks/decode_roofline.py --gemv_configs "$W/guess.json" --runs int4wo-128:ours --repeats 2 --out "$W/roofline_guess"
) > "$W/gpu1.log" 2>&1 &
wait
tar czf "$OUT/j.tgz" -C "$OUT" j
echo "== gpu0"; grep -E "^\||^exit|^NVIDIA|<- best|int4-g128 |Recommended|GEMV_CONFIGS =|FAILED|MISMATCH|failure" "$W/gpu0.log" | cut -c1-260 | head -60
echo "== gpu1"; grep -E "passed|failed|^exit|rror|Killed|^\||^NVIDIA|ms  x|== weights" "$W/gpu1.log" | cut -c1-200 | tail -n 40
