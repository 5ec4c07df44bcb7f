#!/usr/bin/env bash
# Twelfth H200 session, call B (nvidia-h200): ONE process. bf16: inductor's timing-based tuning off
# (notune; call A: 248.6/249.3/249.0 against 241.9/229.5/247.1 with it, the w2 split-K sum + RMSNorm
# kernel 2.6 us against 5.9-8.5 us), with the decode step on PDL too, and with the split-K program
# budget doubled (wqkv split in two, wo and w2 in four); today's ours as the control. The quantized
# techniques with and without notune. Three rounds of bf16, two of the rest; bf16 plain last.
set -u
W=$OUT/s13b; mkdir -p "$W"
export PYTHONUNBUFFERED=1
{
  nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,clocks.mem,power.draw,temperature.gpu --format=csv
  B="bf16:ours+notune,bf16:ours-pdl-all+notune,bf16:ours+notune+bfloat16=8.512.2.1.2.2,bf16:ours-pdl-all+notune+bfloat16=8.512.2.1.2.2,bf16:ours"
  Q="int8wo:ours,int8wo:ours+notune,int4wo-128:ours,int4wo-128:ours+notune,float8wo:ours,float8wo:ours+notune"
  timeout 560 python3 benchmarks/decode_roofline.py --runs "$B,$Q,$B,$Q,$B,bf16:plain" --repeats 2 --timeline 3 --out "$W/roofline"
  echo "exit $? at $(date +%T)"
  nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,clocks.mem,power.draw,temperature.gpu --format=csv
} > "$W/log.txt" 2>&1
tar czf "$OUT/s13b.tgz" -C "$OUT" s13b
grep -E "rror|^exit" "$W/log.txt" | cut -c1-200 | tail -n 20
python3 benchmarks/decode_roofline.py --table-from "$W/roofline/decode_roofline.jsonl" | cut -c1-150
