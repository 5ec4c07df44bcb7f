#!/usr/bin/env bash
# Session 15 call Q (nvidia-h200-x2): int4 GEMV v3 (x as float32 planes, 4-word FFMA chains) against v2.
# GPU0: decode_roofline int4wo-128 ours, one process per GEMV_CONFIGS choice, one after another (A/B/.../A);
#       then profile_decode_step with v3 (does the planes op fuse into the producer?).
# GPU1: the kernel tests of v3 on the GPU; the int4 GEMV sweep (v1, v2, v3); decode with its pick.
set -u
W=$OUT/q; mkdir -p "$W"
export PYTHONUNBUFFERED=1 NCCL_NVLS_ENABLE=0
deadline=$(( $(date +%s) + ${BUDGET:-530} ))
left() { echo $(( deadline - $(date +%s) )); }
step() { echo "+ $*"; timeout "$(left)" "$@"; echo "exit $? at $(date +%T)"; }
(
  export CUDA_VISIBLE_DEVICES=0
  echo '{"int4": [32, 512, 2, 2, 1, 1]}' > "$W/a_v2_today.json"
  echo '{"int4": [16, 512, 2, 3, 0, 1]}' > "$W/b_v3_16.json"
  echo '{"int4": [32, 512, 2, 3, 0, 1]}' > "$W/c_v3_32.json"
  echo '{"int4": [16, 1024, 4, 3, 0, 1]}' > "$W/d_v3_16_1024.json"
  for c in a_v2_today b_v3_16 c_v3_32 d_v3_16_1024 a_v2_today; do
    step python3 benchmarks/decode_roofline.py --gemv_configs "$W/$c.json" --runs int4wo-128:ours --repeats 2 --out "$W/roofline_$c"
  done
  step python3 benchmarks/profile_decode_step.py --scheme int4 --kv_caches prefix --positions 200 --cache_size 208 --top 16 --steps 20 --gemv_configs "$W/b_v3_16.json"
) > "$W/gpu0.log" 2>&1 &
(
  export CUDA_VISIBLE_DEVICES=1
  step python3 -m pytest -q -x tests/test_kernels_gemv.py -k "v3" -p no:cacheprovider
  step python3 benchmarks/gemv_sweep.py --kinds int4 --out "$W/sweep"
  step python3 benchmarks/decode_roofline.py --gemv_configs "$W/sweep/gemv_configs.json" --runs int4wo-128:ours --repeats 2 --out "$W/roofline_swept"
) > "$W/gpu1.log" 2>&1 &
wait
tar czf "$OUT/q.tgz" -C "$OUT" q
echo "== gpu0"; grep -E "^\| int|^exit|^\+|^==|_gemv|triton_" "$W/gpu0.log" | cut -c1-200
echo "== gpu1"; grep -E "passed|failed|^\| |^exit|^NVIDIA|<- best|GEMV_CONFIGS =|FAILED|MISMATCH|failure|torch.compile|sweep took" "$W/gpu1.log" | cut -c1-250 | tail -n 30
