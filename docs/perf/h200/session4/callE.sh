#!/usr/bin/env bash
# Session 13 call E (nvidia-h200-x2): where the non-GEMV time of a short-context decode step goes.
# GPU0: per-kernel profile of 4 Llama-3.1-8B layers at position 200 (cache 208): int8 weights with
#       the model cache and the prefix cache, bf16 weights with the model cache.
# GPU1: decode_roofline ours with the prefix cache (our attention kernel, no mask), int8wo and bf16.
set -u
W=$OUT/e; mkdir -p "$W"
export PYTHONUNBUFFERED=1 NCCL_NVLS_ENABLE=0
deadline=$(( $(date +%s) + ${BUDGET:-420} ))
left() { echo $(( deadline - $(date +%s) )); }
step() { echo "+ $*"; timeout "$(left)" "$@"; echo "exit $? at $(date +%T)"; }
(
  export CUDA_VISIBLE_DEVICES=0
  step python3 benchmarks/profile_decode_step.py --scheme int8 --kv_caches model,prefix --positions 200 --cache_size 208 --top 25 --steps 20
  step python3 benchmarks/profile_decode_step.py --scheme none --kv_caches model --positions 200 --cache_size 208 --top 25 --steps 20
  step python3 benchmarks/profile_decode_step.py --scheme int4 --kv_caches prefix --positions 200 --cache_size 208 --top 25 --steps 20
) > "$W/gpu0.log" 2>&1 &
(
  export CUDA_VISIBLE_DEVICES=1
  step python3 benchmarks/decode_roofline.py --runs int8wo:ours,bf16:ours,int4wo-128:ours --ours_kv_cache prefix --repeats 2 --out "$W/roofline_prefix"
) > "$W/gpu1.log" 2>&1 &
wait
tar czf "$OUT/e.tgz" -C "$OUT" e
echo "== gpu0"; grep -E "^==|^  +[0-9]|^exit" "$W/gpu0.log" | cut -c1-150 | head -150
echo "== gpu1"; grep -v -E "Warn|warn|^ |^/|^W1" "$W/gpu1.log" | tail -n 14
