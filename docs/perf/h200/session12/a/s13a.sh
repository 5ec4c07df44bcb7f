#!/usr/bin/env bash
# Twelfth H200 session, call A (nvidia-h200): bf16 only, ONE process, three rounds: today's ours (GEMVs
# with PDL and prefetch, the forward whole) against the decode step launched with PDL too (so wo's
# GEMV programs start, and issue their first weight tile, while attention runs), with wider first
# tiles (BLOCK_K 1024, 2 or 4 warps), with inductor's kernels on PDL too, and with inductor's timing-
# based tuning off; every row with the kernel timeline of 3 replayed steps. Then the GPU tests of PDL
# and the whole-forward decode on this commit.
set -u
W=$OUT/s13a; mkdir -p "$W"
export PYTHONUNBUFFERED=1
deadline=$(( $(date +%s) + ${BUDGET:-500} ))
left() { echo $(( deadline - $(date +%s) )); }
step() { echo "+ $*"; timeout "$(left)" "$@"; echo "exit $? at $(date +%T)"; }
{
  nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,clocks.mem,power.draw,temperature.gpu --format=csv
  R="bf16:ours,bf16:ours-pdl-all,bf16:ours-pdl-all+bfloat16=8.1024.2.1.2.1,bf16:ours-pdl-all+bfloat16=8.1024.4.1.2.1,bf16:ours+notune,bf16:ours-pdl-all+ipdl"
  BUDGET=0 timeout 380 python3 benchmarks/decode_roofline.py --runs "$R,$R,$R" --repeats 2 --timeline 3 --out "$W/bf16"
  echo "exit $? at $(date +%T)"
  step python3 -m pytest -q -x -p no:cacheprovider tests/test_kernels_gemv.py tests/test_generate.py tests/test_kv_attention.py \
       -k "pdl or whole_step or fused_decode_step_replays" -o addopts=""
  nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,clocks.mem,power.draw,temperature.gpu --format=csv
} > "$W/log.txt" 2>&1
tar czf "$OUT/s13a.tgz" -C "$OUT" s13a
grep -E "passed|failed|rror|^exit|^\+" "$W/log.txt" | cut -c1-200 | tail -n 20
grep -E "^device|^\| [a-z]|\([0-9]+ s\)" "$W/log.txt" | sed -E 's/^\{"technique": "([^"]+)", "path": "([^"]+)".*(\([0-9]+ s\))$/\1 \2 \3/' | cut -c1-190
