#!/usr/bin/env bash
# Thirteenth H200 session, call B (nvidia-h200): ONE process. bf16 ours against inductor's kernels on
# PDL (ipdl, 250.7-250.9 tok/s in call A against 247.3-248.1), with inductor's reductions persistent
# (persist: one pass, their loads first, so under ipdl they release the next GEMV before they
# compute), and persist alone; three rounds. Between them int8wo, float8wo and int4wo-128 ours,
# +ipdl and +ipdl+persist, two rounds. Every row with the kernel timeline of 3 replayed steps.
set -u
W=$OUT/s14b; mkdir -p "$W"
export PYTHONUNBUFFERED=1
{
  nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,clocks.mem,power.draw,temperature.gpu --format=csv
  B="bf16:ours,bf16:ours+ipdl,bf16:ours+ipdl+persist,bf16:ours+persist"
  Q="int8wo:ours,int8wo:ours+ipdl,int8wo:ours+ipdl+persist,float8wo:ours,float8wo:ours+ipdl,float8wo:ours+ipdl+persist"
  Q="$Q,int4wo-128:ours,int4wo-128:ours+ipdl,int4wo-128:ours+ipdl+persist"
  timeout 500 python3 benchmarks/decode_roofline.py --runs "$B,$Q,$B,$Q,$B" --repeats 2 --timeline 3 --out "$W/roofline"
  echo "exit $? at $(date +%T)"
  nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,clocks.mem,power.draw,temperature.gpu --format=csv
} > "$W/log.txt" 2>&1
tar czf "$OUT/s14b.tgz" -C "$OUT" s14b
grep -E "rror|^exit" "$W/log.txt" | cut -c1-200 | tail -n 20
python3 benchmarks/decode_roofline.py --table-from "$W/roofline/decode_roofline.jsonl" | cut -c1-150
