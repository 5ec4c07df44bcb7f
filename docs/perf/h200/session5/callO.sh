#!/usr/bin/env bash
# Session 14 call O (nvidia-h200-x2): bf16 ours with our rowwise GEMV at call N's sweep pick
# (4, 1024, 4, prefetch) against nn.Linear (cuBLAS), one process each, one per GPU.
set -u
W=$OUT/o; mkdir -p "$W"
export PYTHONUNBUFFERED=1 NCCL_NVLS_ENABLE=0
echo '{"bfloat16": [4, 1024, 4, 1, 1]}' > "$W/bf16.json"
(CUDA_VISIBLE_DEVICES=0 timeout 240 python3 benchmarks/decode_roofline.py --gemv_configs "$W/bf16.json" --ours_bf16 gemv --runs bf16:ours --repeats 2 --out "$W/gemv" > "$W/gpu0.log" 2>&1; echo "exit $?" >> "$W/gpu0.log") &
(CUDA_VISIBLE_DEVICES=1 timeout 240 python3 benchmarks/decode_roofline.py --ours_bf16 cublas --runs bf16:ours --repeats 2 --out "$W/cublas" > "$W/gpu1.log" 2>&1; echo "exit $?" >> "$W/gpu1.log") &
wait
tar czf "$OUT/o.tgz" -C "$OUT" o
for g in 0 1; do echo "== gpu$g"; grep -E "^\||^exit|^NVIDIA|^GEMV" "$W/gpu$g.log" | cut -c1-250; done
