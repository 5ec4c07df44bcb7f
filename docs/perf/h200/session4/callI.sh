#!/usr/bin/env bash
# Session 13 call I (nvidia-h200): the plain and ours paths in ONE process, with torchao's
# recommended inductor settings (call H ran out of time before its ours rows). Plain rows first.
set -u
W=$OUT/i; mkdir -p "$W"
export PYTHONUNBUFFERED=1
timeout 255 python3 benchmarks/decode_roofline.py --runs int4wo-128:plain,int8wo:plain,int8wo:ours,int4wo-128:ours,float8wo:ours,bf16:ours --repeats 2 --out "$W/roofline" > "$W/run.log" 2>&1
echo "exit $?"
grep -E "^\||^NVIDIA" "$W/run.log" | cut -c1-250
