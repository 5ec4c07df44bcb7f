#!/usr/bin/env bash
# Session 18 call C (nvidia-h200): which kernels to launch with PDL. In ONE process, per technique: PDL for
# every kernel of ours, none, the GEMVs only, the fused decode step only; then the plain paths for the
# ratios, then two runs again (order effects).
set -u
W=$OUT/s9c; mkdir -p "$W"
export PYTHONUNBUFFERED=1
deadline=$(( $(date +%s) + ${BUDGET:-560} ))
left() { echo $(( deadline - $(date +%s) )); }
step() { echo "+ $*"; timeout "$(left)" "$@"; echo "exit $? at $(date +%T)"; }
{
  step timeout 60 python3 -m pytest -q -p no:cacheprovider tests/test_generate.py tests/test_kernels_gemv.py -k "pdl"
  step python3 benchmarks/decode_roofline.py --runs int4wo-128:ours-pdl-all,int4wo-128:ours-serial,int4wo-128:ours-pdl-gemv,int4wo-128:ours-pdl-step,int8wo:ours-pdl-all,int8wo:ours-serial,int8wo:ours-pdl-gemv,int8wo:ours-pdl-step,float8wo:ours-pdl-all,float8wo:ours-serial,bf16:ours-pdl-all,bf16:ours-serial,bf16:plain,int4wo-128:plain,float8dq-row:plain,int8wo:plain,int4wo-128:ours-pdl-all,int8wo:ours-serial --repeats 2 --out "$W/roofline"
  nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,clocks.mem,temperature.gpu,power.draw --format=csv
} > "$W/log.txt" 2>&1
tar czf "$OUT/s9c.tgz" -C "$OUT" s9c
grep -E "passed|failed|rror|^exit|^\+" "$W/log.txt" | cut -c1-200 | tail -n 30
grep -E "^\| [a-z]" "$W/log.txt" | cut -c1-250
