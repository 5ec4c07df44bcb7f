#!/usr/bin/env bash
# Session 18 call A (nvidia-h200): programmatic dependent launch (PDL) in our GEMV and fused decode-step
# kernels. GPU tests (the PDL chain in a CUDA graph among them), then in ONE process ours with PDL against
# ours-serial (the same kernels launched without it) for bf16, int4wo-128, int8wo, float8wo; then plain
# bf16 and int4wo-128 for the ratio.
set -u
W=$OUT/s9a; mkdir -p "$W"
export PYTHONUNBUFFERED=1
deadline=$(( $(date +%s) + ${BUDGET:-540} ))
left() { echo $(( deadline - $(date +%s) )); }
step() { echo "+ $*"; timeout "$(left)" "$@"; echo "exit $? at $(date +%T)"; }
{
  python3 -c "import torch, triton, triton.language.extra.cuda as c; print(torch.__version__, triton.__version__, torch.cuda.get_device_name(), c.gdc_wait)"
  nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,clocks.mem,temperature.gpu,power.draw --format=csv
  step timeout 170 python3 -m pytest -q -p no:cacheprovider tests/test_kernels_gemv.py tests/test_kv_attention.py -k "pdl or gpu or fused or replay or compiled or swiglu"
  step python3 benchmarks/decode_roofline.py --runs bf16:ours,bf16:ours-serial,int4wo-128:ours,int4wo-128:ours-serial,int8wo:ours,int8wo:ours-serial,float8wo:ours,float8wo:ours-serial,bf16:ours,bf16:ours-serial,bf16:plain,int4wo-128:plain --repeats 2 --out "$W/roofline"
  nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,clocks.mem,temperature.gpu,power.draw --format=csv
} > "$W/log.txt" 2>&1
tar czf "$OUT/s9a.tgz" -C "$OUT" s9a
grep -E "passed|failed|rror|^exit|^\+|^[0-9]" "$W/log.txt" | cut -c1-200 | tail -n 30
grep -E "^\| [a-z]" "$W/log.txt" | cut -c1-250
grep -o '"technique": "[^"]*", "path": "[^"]*"\|"tokens_sha1": "[^"]*"' "$W/log.txt" | paste - -
