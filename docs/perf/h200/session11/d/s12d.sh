#!/usr/bin/env bash
# Eleventh H200 session, call D (nvidia-h200): GEMVs issuing their first weight tile before PDL's wait, with
# inductor's kernels (the RMSNorms, the residual adds) launched with PDL too, so every GEMV's first loads may
# overlap the kernel before it; with the blocks compiled apart or the forward whole. ONE process, three rounds.
set -u
W=$OUT/s12d; mkdir -p "$W"
export PYTHONUNBUFFERED=1
deadline=$(( $(date +%s) + ${BUDGET:-400} ))
left() { echo $(( deadline - $(date +%s) )); }
step() { echo "+ $*"; timeout "$(left)" "$@"; echo "exit $? at $(date +%T)"; }
{
  R="bf16:ours,bf16:ours-pdl-all+prefetch+whole,bf16:ours-pdl-all+prefetch+ipdl,bf16:ours-pdl-all+prefetch+ipdl+whole"
  step python3 benchmarks/decode_roofline.py --runs "$R,$R,$R" --repeats 2 --out "$W/bf16"
  Q="int4wo-128:ours,int4wo-128:ours+whole,int4wo-128:ours-pdl-all+prefetch+ipdl+whole"
  step python3 benchmarks/decode_roofline.py --runs "$Q,$Q" --repeats 2 --out "$W/int4"
} > "$W/log.txt" 2>&1
tar czf "$OUT/s12d.tgz" -C "$OUT" s12d
grep -E "passed|failed|rror|^exit|^\+" "$W/log.txt" | cut -c1-200 | tail -n 20
grep -E "^device|^\| [a-z]|\([0-9]+ s\)" "$W/log.txt" | sed -E 's/^\{"technique": "([^"]+)", "path": "([^"]+)".*(\([0-9]+ s\))$/\1 \2 \3/' | cut -c1-150
