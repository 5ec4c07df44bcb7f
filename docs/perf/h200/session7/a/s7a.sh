#!/usr/bin/env bash
# Session 16 call A (nvidia-h200-x2): float8 on the word kernel (v2, PTX e4m3 -> f16x2 conversion), and
# the GEMV_CONFIGS-into-the-op fix checked with inductor's caches on.
set -u
W=$OUT/s7a; mkdir -p "$W"
export PYTHONUNBUFFERED=1 NCCL_NVLS_ENABLE=0
deadline=$(( $(date +%s) + ${BUDGET:-540} ))
left() { echo $(( deadline - $(date +%s) )); }
step() { echo "+ $*"; timeout "$(left)" "$@"; echo "exit $? at $(date +%T)"; }
echo '{"float8_e4m3fn": [8, 512, 2, 0, 2, 1]}' > "$W/f8v2.json"
echo '{"float8_e4m3fn": [8, 512, 2, 1, 2, 1]}' > "$W/f8v2_prefetch.json"
(
  export CUDA_VISIBLE_DEVICES=0
  for c in "4,1024,4" "8,512,2,0,2" "4,1024,4"; do step python3 .device/s7/trap_check.py "$c"; done
  step python3 benchmarks/decode_roofline.py --runs int8wo:ours,float8wo:ours --repeats 2 --out "$W/roofline_today"
  step python3 benchmarks/decode_roofline.py --gemv_configs "$W/f8v2.json" --runs int8wo:ours,float8wo:ours --repeats 2 --out "$W/roofline_f8v2"
  step python3 benchmarks/decode_roofline.py --gemv_configs "$W/f8v2_prefetch.json" --runs float8wo:ours --repeats 2 --out "$W/roofline_f8v2_prefetch"
  step python3 benchmarks/profile_decode_step.py --scheme float8 --layers 8 --kv_caches prefix --positions 200 --cache_size 208 --top 3 --steps 20 --gemv_configs "$W/f8v2.json"
) > "$W/gpu0.log" 2>&1 &
(
  export CUDA_VISIBLE_DEVICES=1
  step python3 -m pytest -q -p no:cacheprovider tests/test_kernels_gemv.py
  step python3 benchmarks/gemv_sweep.py --kinds float8_e4m3fn --out "$W/sweep"
  step python3 benchmarks/decode_roofline.py --gemv_configs "$W/sweep/gemv_configs.json" --runs int8wo:ours,float8wo:ours --repeats 2 --out "$W/roofline_swept"
) > "$W/gpu1.log" 2>&1 &
wait
tar czf "$OUT/s7a.tgz" -C "$OUT" s7a
echo "== gpu0"; grep -E "^entry|^\| |^exit|^\+|GB/s|_gemv" "$W/gpu0.log" | cut -c1-200 | tail -n 60
echo "== gpu1"; grep -E "passed|failed|^\| |^exit|<- best|GEMV_CONFIGS =|FAILED|MISMATCH|failure|torch.compile|sweep took" "$W/gpu1.log" | cut -c1-250 | tail -n 30
