#!/usr/bin/env bash
# Session 14 call L (nvidia-h200-x2): split-K again, with the loads' alignment hints restored
# (call K's kernels lost 16-byte loads: every v2 number there is low).
# GPU0: decode_roofline ours, int8wo and int4wo-128, under four GEMV_CONFIGS choices.
# GPU1: gemv_sweep of int8 and int4 (deploy with split-K off and on), then float8wo ours.
set -u
W=$OUT/l; mkdir -p "$W"
export PYTHONUNBUFFERED=1 NCCL_NVLS_ENABLE=0
deadline=$(( $(date +%s) + ${BUDGET:-520} ))
left() { echo $(( deadline - $(date +%s) )); }
step() { echo "+ $*"; timeout "$(left)" "$@"; echo "exit $? at $(date +%T)"; }
(
  export CUDA_VISIBLE_DEVICES=0
  echo '{"int8": [8, 512, 2, 0, 2], "int4": [32, 512, 2, 2, 1]}' > "$W/a_today.json"
  echo '{"int8": [8, 512, 2, 0, 2, 1], "int4": [32, 512, 2, 2, 1, 1]}' > "$W/b_today_split.json"
  echo '{"int8": [4, 1024, 2, 0, 2], "int4": [32, 512, 4, 2, 0, 1]}' > "$W/c_k_picks.json"
  echo '{"int8": [4, 1024, 2, 0, 2, 1], "int4": [32, 512, 4, 2, 1, 0]}' > "$W/d_other.json"
  for c in a_today b_today_split c_k_picks d_other; do
    step python3 benchmarks/decode_roofline.py --gemv_configs "$W/$c.json" --runs int8wo:ours,int4wo-128:ours --repeats 2 --out "$W/roofline_$c"
  done
) > "$W/gpu0.log" 2>&1 &
(
  export CUDA_VISIBLE_DEVICES=1
  step python3 benchmarks/gemv_sweep.py --kinds int8,int4 --out "$W/sweep"
  step python3 benchmarks/decode_roofline.py --gemv_configs "$W/sweep/gemv_configs.json" --runs int8wo:ours,int4wo-128:ours,float8wo:ours --repeats 2 --out "$W/roofline_swept"
) > "$W/gpu1.log" 2>&1 &
wait
tar czf "$OUT/l.tgz" -C "$OUT" l
echo "== gpu0"; grep -E "^\| int|^exit|^\+|GEMV_CONFIGS from" "$W/gpu0.log" | cut -c1-200
echo "== gpu1"; grep -E "^\| |^exit|^NVIDIA|<- best|GEMV_CONFIGS =|FAILED|MISMATCH|failure|torch.compile" "$W/gpu1.log" | cut -c1-250 | tail -n 30
