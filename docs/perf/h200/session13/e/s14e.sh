#!/usr/bin/env bash
# Thirteenth H200 session, call E (nvidia-h200): the GPU tests of PDL, the whole-forward decode, the
# fused step and inductor's settings on the committed code; then bf16 ours against ours without
# inductor's kernels on PDL (noipdl) in one more process, three rounds.
set -u
W=$OUT/s14e; mkdir -p "$W"
export PYTHONUNBUFFERED=1
{
  nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,clocks.mem,power.draw,temperature.gpu --format=csv
  timeout 200 python3 -m pytest -q -x -p no:cacheprovider tests/test_kernels_gemv.py tests/test_generate.py tests/test_kv_attention.py \
       -k "pdl or whole_step or fused_decode_step_replays or inductor" -o addopts=""
  echo "exit $? at $(date +%T)"
  R="bf16:ours,bf16:ours+noipdl"
  timeout 200 python3 benchmarks/decode_roofline.py --runs "$R,$R,$R" --repeats 2 --out "$W/bf16"
  echo "exit $? at $(date +%T)"
  nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,clocks.mem,power.draw,temperature.gpu --format=csv
} > "$W/log.txt" 2>&1
tar czf "$OUT/s14e.tgz" -C "$OUT" s14e
grep -E "passed|failed|rror|^exit" "$W/log.txt" | cut -c1-200 | tail -n 20
python3 benchmarks/decode_roofline.py --table-from "$W/bf16/decode_roofline.jsonl" | cut -c1-175
