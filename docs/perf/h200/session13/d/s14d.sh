#!/usr/bin/env bash
# Thirteenth H200 session, call D (nvidia-h200): the committed defaults, ONE process: ours for bf16
# (now with inductor's kernels on PDL), int8wo, float8wo and int4wo-128, two rounds (bf16 three, and
# bf16 without inductor's kernels on PDL twice), with the plain paths of bf16, int4wo-128 and int8wo
# between them; every row with the kernel timeline of 3 replayed steps.
set -u
W=$OUT/s14d; mkdir -p "$W"
export PYTHONUNBUFFERED=1
{
  nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,clocks.mem,power.draw,temperature.gpu --format=csv
  O="bf16:ours,int8wo:ours,float8wo:ours,int4wo-128:ours"
  timeout 540 python3 benchmarks/decode_roofline.py \
      --runs "$O,bf16:ours+noipdl,bf16:plain,$O,bf16:ours+noipdl,int4wo-128:plain,bf16:ours,int8wo:plain" \
      --repeats 2 --timeline 3 --out "$W/roofline"
  echo "exit $? at $(date +%T)"
  nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,clocks.mem,power.draw,temperature.gpu --format=csv
} > "$W/log.txt" 2>&1
tar czf "$OUT/s14d.tgz" -C "$OUT" s14d
grep -E "rror|^exit" "$W/log.txt" | cut -c1-200 | tail -n 20
python3 benchmarks/decode_roofline.py --table-from "$W/roofline/decode_roofline.jsonl" | cut -c1-175
