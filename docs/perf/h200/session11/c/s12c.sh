#!/usr/bin/env bash
# Eleventh H200 session, call C (nvidia-h200): each GEMV program issuing its first weight tile before PDL's wait
# (prefetch on) with PDL, so a GEMV's loads start while the kernel before it finishes; bf16, then int8wo and
# float8wo, interleaved in ONE process, two rounds.
set -u
W=$OUT/s12c; mkdir -p "$W"
export PYTHONUNBUFFERED=1
deadline=$(( $(date +%s) + ${BUDGET:-520} ))
left() { echo $(( deadline - $(date +%s) )); }
step() { echo "+ $*"; timeout "$(left)" "$@"; echo "exit $? at $(date +%T)"; }
{
  R="bf16:ours,bf16:ours+prefetch,bf16:ours-pdl-all+prefetch,bf16:ours-pdl-gemv+prefetch,bf16:ours-pdl-all+prefetch+whole"
  step python3 benchmarks/decode_roofline.py --runs "$R,$R" --repeats 2 --out "$W/bf16"
  Q="int8wo:ours,int8wo:ours-pdl-all+prefetch,float8wo:ours,float8wo:ours-pdl-all+prefetch"
  step python3 benchmarks/decode_roofline.py --runs "$Q,$Q" --repeats 2 --out "$W/quant"
} > "$W/log.txt" 2>&1
tar czf "$OUT/s12c.tgz" -C "$OUT" s12c
grep -E "passed|failed|rror|^exit|^\+" "$W/log.txt" | cut -c1-200 | tail -n 20
grep -E "^device|^\| [a-z]|\([0-9]+ s\)" "$W/log.txt" | sed -E 's/^\{"technique": "([^"]+)", "path": "([^"]+)".*(\([0-9]+ s\))$/\1 \2 \3/' | cut -c1-150
