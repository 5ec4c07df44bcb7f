#!/usr/bin/env bash
# Session 13 call H (nvidia-h200-x2): decode_roofline again, now with torchao's recommended inductor
# settings on both paths (call G's plain rows ran without them).
# GPU0: plain rows first, then ours, one process. GPU1: the GPU tests, then the gpt-fast-style
# full-step compile of the plain int8wo/int4wo-128 paths (the baseline setup).
set -u
W=$OUT/h; mkdir -p "$W"
export PYTHONUNBUFFERED=1 NCCL_NVLS_ENABLE=0
deadline=$(( $(date +%s) + ${BUDGET:-470} ))
left() { echo $(( deadline - $(date +%s) )); }
step() { echo "+ $*"; timeout "$(left)" "$@"; echo "exit $? at $(date +%T)"; }
(
  export CUDA_VISIBLE_DEVICES=0
  step python3 benchmarks/decode_roofline.py --runs bf16:plain,int8wo:plain,int4wo-128:plain,float8wo:plain,float8dq-row:plain,bf16:ours,int8wo:ours,int4wo-128:ours,float8wo:ours --repeats 2 --out "$W/roofline"
) > "$W/gpu0.log" 2>&1 &
(
  export CUDA_VISIBLE_DEVICES=1
  step python3 -m pytest -q -p no:cacheprovider tests/test_kernels_gemv.py tests/test_kv_attention.py
  step python3 benchmarks/decode_roofline.py --compile full --runs int8wo:plain,int4wo-128:plain --repeats 2 --out "$W/roofline_full"
) > "$W/gpu1.log" 2>&1 &
wait
tar czf "$OUT/h.tgz" -C "$OUT" h
echo "== gpu0"; grep -E "^\||^exit|^NVIDIA" "$W/gpu0.log" | cut -c1-250
echo "== gpu1"; grep -E "passed|failed|^exit|rror|Killed|^\||^NVIDIA" "$W/gpu1.log" | cut -c1-250 | tail -n 20
