#!/usr/bin/env bash
# Session 17 call E (nvidia-h200, the last device time): bf16 ours, plain, ours again and int4wo-128 ours
# in one process (call D's second bf16 ours ran 11% slower than its first).
set -u
W=$OUT/s8e; mkdir -p "$W"
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=clocks.sm,clocks.max.sm,temperature.gpu,power.draw --format=csv > "$W/gpu_before.txt" 2>&1
timeout 170 python3 benchmarks/decode_roofline.py --runs bf16:ours,bf16:plain,bf16:ours,int4wo-128:ours --repeats 2 --out "$W/roofline" > "$W/log.txt" 2>&1
echo "exit $?" >> "$W/log.txt"
nvidia-smi --query-gpu=clocks.sm,clocks.max.sm,temperature.gpu,power.draw --format=csv > "$W/gpu_after.txt" 2>&1
tar czf "$OUT/s8e.tgz" -C "$OUT" s8e
grep -E "^\| [a-z]|^exit|^device" "$W/log.txt" | cut -c1-250
cat "$W/gpu_before.txt" "$W/gpu_after.txt"
