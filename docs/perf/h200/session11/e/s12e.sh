#!/usr/bin/env bash
# Eleventh H200 session, call E (nvidia-h200): bf16 only, ONE process: today's ours against its GEMVs with
# prefetch and PDL (bf16 GEMVs only: nothing else changes for the other techniques), with the blocks compiled
# apart and the forward whole; three rounds, bf16 plain once between them.
set -u
W=$OUT/s12e; mkdir -p "$W"
export PYTHONUNBUFFERED=1
deadline=$(( $(date +%s) + ${BUDGET:-230} ))
left() { echo $(( deadline - $(date +%s) )); }
step() { echo "+ $*"; timeout "$(left)" "$@"; echo "exit $? at $(date +%T)"; }
{
  R="bf16:ours,bf16:ours-pdl-gemv+prefetch,bf16:ours-pdl-gemv+prefetch+whole"
  step python3 benchmarks/decode_roofline.py --runs "$R,$R,bf16:plain,$R" --repeats 2 --out "$W/bf16"
} > "$W/log.txt" 2>&1
tar czf "$OUT/s12e.tgz" -C "$OUT" s12e
grep -E "passed|failed|rror|^exit|^\+" "$W/log.txt" | cut -c1-200 | tail -n 20
grep -E "^device|^\| [a-z]|\([0-9]+ s\)" "$W/log.txt" | sed -E 's/^\{"technique": "([^"]+)", "path": "([^"]+)".*(\([0-9]+ s\))$/\1 \2 \3/' | cut -c1-150
