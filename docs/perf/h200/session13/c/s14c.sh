#!/usr/bin/env bash
# Thirteenth H200 session, call C (nvidia-h200): bf16 only, ONE process, three rounds: ours, now with
# inductor's kernels on PDL (gemv.inductor_settings), against ours with those kernels releasing the
# next GEMV right after their wait (early: pdl.inductor_release_early; compile caches off for it)
# and against ours without them on PDL (noipdl, the old default); every row with the kernel
# timeline of 3 replayed steps.
set -u
W=$OUT/s14c; mkdir -p "$W"
export PYTHONUNBUFFERED=1
{
  nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,clocks.mem,power.draw,temperature.gpu --format=csv
  R="bf16:ours,bf16:ours+early,bf16:ours+noipdl"
  timeout 400 python3 benchmarks/decode_roofline.py --runs "$R,$R,$R" --repeats 2 --timeline 3 --out "$W/bf16"
  echo "exit $? at $(date +%T)"
  nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,clocks.mem,power.draw,temperature.gpu --format=csv
} > "$W/log.txt" 2>&1
tar czf "$OUT/s14c.tgz" -C "$OUT" s14c
grep -E "rror|^exit" "$W/log.txt" | cut -c1-200 | tail -n 20
python3 benchmarks/decode_roofline.py --table-from "$W/bf16/decode_roofline.jsonl" | cut -c1-150
grep -o '"path": "[^"]*"\|"inductor_released_early": [0-9]*\|"inductor": {[^}]*}' "$W/bf16/decode_roofline.jsonl" | paste - - - | head -9
