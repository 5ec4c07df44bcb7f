#!/usr/bin/env bash
# Tenth H200 session, call D (nvidia-h200): the headline with the committed defaults (int4 entry (32,512,2) without
# prefetch, PDL off), in ONE process: each technique's plain path and ours, then ours again (order
# effects); GPU tests of the GEMV kernels and generate first.
set -u
W=$OUT/s10e; mkdir -p "$W"
export PYTHONUNBUFFERED=1
deadline=$(( $(date +%s) + ${BUDGET:-570} ))
left() { echo $(( deadline - $(date +%s) )); }
step() { echo "+ $*"; timeout "$(left)" "$@"; echo "exit $? at $(date +%T)"; }
{
  step timeout 150 python3 -m pytest -q -p no:cacheprovider tests/test_kernels_gemv.py tests/test_generate.py -k "int4 or pdl or generate"
  step python3 benchmarks/decode_roofline.py --runs bf16:plain,bf16:ours,int8wo:plain,int8wo:ours,float8dq-row:plain,float8wo:ours,int4wo-128:plain,int4wo-128:ours,int4wo-128:ours,float8wo:ours,int8wo:ours,bf16:ours --repeats 2 --out "$W/roofline"
  nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,clocks.mem,temperature.gpu,power.draw --format=csv
} > "$W/log.txt" 2>&1
tar czf "$OUT/s10e.tgz" -C "$OUT" s10e
grep -E "passed|failed|rror|^exit|^\+" "$W/log.txt" | cut -c1-200 | tail -n 30
grep -E "^\| [a-z]" "$W/log.txt" | cut -c1-250
