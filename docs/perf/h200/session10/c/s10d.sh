#!/usr/bin/env bash
# Tenth H200 session, call C (nvidia-h200): with the int4 entry (32,512,2, no prefetch), which int4 kernels to launch with
# PDL, in ONE process, two rounds (order effects); inductor's caches off.
set -u
W=$OUT/s10d; mkdir -p "$W"
export PYTHONUNBUFFERED=1 TORCHINDUCTOR_FX_GRAPH_CACHE=0 TORCHINDUCTOR_AUTOGRAD_CACHE=0
deadline=$(( $(date +%s) + ${BUDGET:-560} ))
left() { echo $(( deadline - $(date +%s) )); }
step() { echo "+ $*"; timeout "$(left)" "$@"; echo "exit $? at $(date +%T)"; }
{
  step python3 benchmarks/decode_roofline.py --runs int4wo-128:ours-pdl-all,int4wo-128:ours-serial,int4wo-128:ours-pdl-gemv,int4wo-128:ours-pdl-step,int4wo-128:ours-serial,int4wo-128:ours-pdl-step,int4wo-128:ours-pdl-gemv,int4wo-128:ours-pdl-all --repeats 2 --gemv_configs .device/s10/int4_32_512_2_2_0_1.json --out "$W/pdl"
  nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,clocks.mem,temperature.gpu,power.draw --format=csv
} > "$W/log.txt" 2>&1
tar czf "$OUT/s10d.tgz" -C "$OUT" s10d
grep -E "passed|failed|rror|^exit|^\+" "$W/log.txt" | cut -c1-200 | tail -n 30
grep -E "^\| [a-z]" "$W/log.txt" | cut -c1-140
