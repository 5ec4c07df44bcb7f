#!/usr/bin/env bash
# Twelfth H200 session, call C (nvidia-h200): the committed defaults, ONE process: ours for bf16
# (now with the decode step on PDL and inductor's tuning off), int8wo, float8wo and int4wo-128, two
# rounds (bf16 three), with the plain paths of bf16, int4wo-128 and int8wo between them; every row
# with the kernel timeline of 3 replayed steps.
set -u
W=$OUT/s13c; mkdir -p "$W"
export PYTHONUNBUFFERED=1
{
  nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,clocks.mem,power.draw,temperature.gpu --format=csv
  O="bf16:ours,int8wo:ours,float8wo:ours,int4wo-128:ours"
  timeout 510 python3 benchmarks/decode_roofline.py --runs "$O,bf16:plain,$O,int4wo-128:plain,bf16:ours,int8wo:plain" \
      --repeats 2 --timeline 3 --out "$W/roofline"
  echo "exit $? at $(date +%T)"
  nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,clocks.mem,power.draw,temperature.gpu --format=csv
} > "$W/log.txt" 2>&1
tar czf "$OUT/s13c.tgz" -C "$OUT" s13c
grep -E "rror|^exit" "$W/log.txt" | cut -c1-200 | tail -n 20
python3 benchmarks/decode_roofline.py --table-from "$W/roofline/decode_roofline.jsonl" | cut -c1-175
