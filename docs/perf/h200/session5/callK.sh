#!/usr/bin/env bash
# Session 14 call K (nvidia-h200-x2): split-K for the v2 GEMV kernels (int8, int4).
# GPU0: gemv_sweep of int8 and int4 (deploy with split-K off and on), then decode_roofline ours
#       with the sweep's pick (int8wo, int4wo-128, float8wo).
# GPU1: the GEMV kernel tests on CUDA, then decode_roofline ours with today's configs plus split-K.
set -u
W=$OUT/k; mkdir -p "$W"
export PYTHONUNBUFFERED=1 NCCL_NVLS_ENABLE=0
deadline=$(( $(date +%s) + ${BUDGET:-500} ))
left() { echo $(( deadline - $(date +%s) )); }
step() { echo "+ $*"; timeout "$(left)" "$@"; echo "exit $? at $(date +%T)"; }
(
  export CUDA_VISIBLE_DEVICES=0
  step python3 benchmarks/gemv_sweep.py --kinds int8,int4 --out "$W/sweep"
  step python3 benchmarks/decode_roofline.py --gemv_configs "$W/sweep/gemv_configs.json" --runs int8wo:ours,int4wo-128:ours,float8wo:ours --repeats 2 --out "$W/roofline_swept"
) > "$W/gpu0.log" 2>&1 &
(
  export CUDA_VISIBLE_DEVICES=1
  step python3 -m pytest -q -p no:cacheprovider tests/test_kernels_gemv.py -x
  echo '{"int8": [8, 512, 2, 0, 2, 1], "int4": [32, 512, 2, 2, 1, 1]}' > "$W/split.json"
  step python3 benchmarks/decode_roofline.py --gemv_configs "$W/split.json" --runs int4wo-128:ours,int8wo:ours --repeats 2 --out "$W/roofline_split"
  step python3 benchmarks/decode_roofline.py --runs int4wo-128:ours,int8wo:ours --repeats 2 --out "$W/roofline_nosplit"
) > "$W/gpu1.log" 2>&1 &
wait
tar czf "$OUT/k.tgz" -C "$OUT" k
echo "== gpu0"; grep -E "^\||^exit|^NVIDIA|<- best|Recommended|GEMV_CONFIGS =|FAILED|MISMATCH|failure|torch.compile" "$W/gpu0.log" | cut -c1-250 | head -60
echo "== gpu1"; grep -E "passed|failed|^exit|rror|Killed|^\||^NVIDIA" "$W/gpu1.log" | cut -c1-200 | tail -n 30
