#!/usr/bin/env bash
# Session 18 call B (nvidia-h200): PDL for inductor's kernels too (triton.enable_pdl during GraphedDecode's
# compile); the word kernel without PREFETCH loads nothing before the wait. GPU tests (the decode graph
# with PDL against serial), then in ONE process ours (PDL everywhere), ours-kernel-pdl and ours-serial.
set -u
W=$OUT/s9b; mkdir -p "$W"
export PYTHONUNBUFFERED=1
deadline=$(( $(date +%s) + ${BUDGET:-540} ))
left() { echo $(( deadline - $(date +%s) )); }
step() { echo "+ $*"; timeout "$(left)" "$@"; echo "exit $? at $(date +%T)"; }
{
  python3 -c "import torch._inductor.config as c; print('inductor enable_pdl', getattr(c.triton, 'enable_pdl', 'missing'))"
  step timeout 120 python3 -m pytest -q -p no:cacheprovider tests/test_generate.py tests/test_kernels_gemv.py -k "pdl"
  step python3 benchmarks/decode_roofline.py --runs bf16:ours,bf16:ours-serial,bf16:ours-kernel-pdl,int4wo-128:ours,int4wo-128:ours-serial,int4wo-128:ours-kernel-pdl,int8wo:ours,int8wo:ours-serial,int8wo:ours-kernel-pdl,float8wo:ours,float8wo:ours-serial,float8wo:ours-kernel-pdl,bf16:ours,int4wo-128:ours --repeats 2 --out "$W/roofline"
  nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,clocks.mem,temperature.gpu,power.draw --format=csv
} > "$W/log.txt" 2>&1
tar czf "$OUT/s9b.tgz" -C "$OUT" s9b
grep -E "passed|failed|rror|^exit|^\+|^inductor" "$W/log.txt" | cut -c1-200 | tail -n 30
grep -E "^\| [a-z]" "$W/log.txt" | cut -c1-250
grep -o '"technique": "[^"]*", "path": "[^"]*"\|"tokens_sha1": "[^"]*"' "$W/log.txt" | paste - -
