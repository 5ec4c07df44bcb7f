#!/usr/bin/env bash
# Session 17 call F (nvidia-h200, the last device time): is a compiled bf16 ours step slower when
# inductor's graph cache hits (calls D, E: ~219 tok/s with a 1.7-3.5 s warm-up, 231-246 compiled
# afresh)? Inductor's caches off: every run compiles afresh.
set -u
W=$OUT/s8f; mkdir -p "$W"
export PYTHONUNBUFFERED=1
TORCHINDUCTOR_FX_GRAPH_CACHE=0 TORCHINDUCTOR_AUTOGRAD_CACHE=0 timeout 140 python3 benchmarks/decode_roofline.py --runs bf16:ours,bf16:ours,int8wo:ours --repeats 2 --out "$W/roofline" > "$W/log.txt" 2>&1
echo "exit $?" >> "$W/log.txt"
tar czf "$OUT/s8f.tgz" -C "$OUT" s8f
grep -E "^\| [a-z]|^exit|^device" "$W/log.txt" | cut -c1-250
