#!/usr/bin/env bash
# Eleventh H200 session, call B (nvidia-h200): the whole forward compiled as one graph (inductor may then fuse
# w2's split-K sum and residual add into the next layer's RMSNorm: one kernel fewer a layer) and the norms in
# the GEMV prologue, against today's ours, interleaved in ONE process, two rounds; then the quantized techniques.
set -u
W=$OUT/s12b; mkdir -p "$W"
export PYTHONUNBUFFERED=1
deadline=$(( $(date +%s) + ${BUDGET:-540} ))
left() { echo $(( deadline - $(date +%s) )); }
step() { echo "+ $*"; timeout "$(left)" "$@"; echo "exit $? at $(date +%T)"; }
{
  R="bf16:ours,bf16:ours+whole,bf16:ours+norms,bf16:ours+norms+whole"
  step python3 benchmarks/decode_roofline.py --runs "$R,$R" --repeats 2 --out "$W/bf16"
  Q="int4wo-128:ours,int4wo-128:ours+whole,int8wo:ours,int8wo:ours+whole,float8wo:ours,float8wo:ours+whole,int4wo-128:ours+apart+whole"
  step python3 benchmarks/decode_roofline.py --runs "$Q,$Q" --repeats 2 --out "$W/quant"
} > "$W/log.txt" 2>&1
tar czf "$OUT/s12b.tgz" -C "$OUT" s12b
grep -E "passed|failed|rror|^exit|^\+" "$W/log.txt" | cut -c1-200 | tail -n 20
grep -E "^device|^\| [a-z]|\([0-9]+ s\)" "$W/log.txt" | sed -E 's/^\{"technique": "([^"]+)", "path": "([^"]+)".*(\([0-9]+ s\))$/\1 \2 \3/' | cut -c1-150
