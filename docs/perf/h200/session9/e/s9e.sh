#!/usr/bin/env bash
# Session 18 call E (nvidia-h200): the committed defaults (PDL for the int4 GEMVs and the fused decode step)
# in ONE process, plain and ours, for the headline table.
set -u
W=$OUT/s9e; mkdir -p "$W"
export PYTHONUNBUFFERED=1
deadline=$(( $(date +%s) + ${BUDGET:-440} ))
left() { echo $(( deadline - $(date +%s) )); }
step() { echo "+ $*"; timeout "$(left)" "$@"; echo "exit $? at $(date +%T)"; }
{
  step timeout 50 python3 -m pytest -q -p no:cacheprovider tests/test_generate.py tests/test_kernels_gemv.py -k "pdl"
  step python3 benchmarks/decode_roofline.py --runs bf16:ours,int8wo:ours,float8wo:ours,int4wo-128:ours,bf16:plain,int4wo-128:plain,float8dq-row:plain,int8wo:plain --repeats 2 --out "$W/roofline"
} > "$W/log.txt" 2>&1
tar czf "$OUT/s9e.tgz" -C "$OUT" s9e
grep -E "passed|failed|rror|^exit|^\+" "$W/log.txt" | cut -c1-200 | tail -n 30
grep -E "^\| [a-z]" "$W/log.txt" | cut -c1-250
