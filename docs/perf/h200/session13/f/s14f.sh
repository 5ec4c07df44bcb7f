#!/usr/bin/env bash
# Thirteenth H200 session, call F (nvidia-h200, a fresh loan): the committed defaults once more, ONE
# process: bf16 ours against ours without inductor's kernels on PDL (noipdl), three rounds, with
# int8wo, float8wo and int4wo-128 ours once between them.
set -u
W=$OUT/s14f; mkdir -p "$W"
export PYTHONUNBUFFERED=1
{
  nvidia-smi --query-gpu=name,serial,clocks.sm,clocks.max.sm,clocks.mem,power.draw,temperature.gpu --format=csv
  R="bf16:ours,bf16:ours+noipdl"
  timeout 300 python3 benchmarks/decode_roofline.py --runs "$R,int8wo:ours,float8wo:ours,int4wo-128:ours,$R,$R" \
      --repeats 2 --out "$W/roofline"
  echo "exit $? at $(date +%T)"
  nvidia-smi --query-gpu=name,serial,clocks.sm,clocks.max.sm,clocks.mem,power.draw,temperature.gpu --format=csv
} > "$W/log.txt" 2>&1
tar czf "$OUT/s14f.tgz" -C "$OUT" s14f
grep -E "rror|^exit" "$W/log.txt" | cut -c1-200 | tail -n 20
python3 benchmarks/decode_roofline.py --table-from "$W/roofline/decode_roofline.jsonl" | cut -c1-175
