#!/usr/bin/env bash
# Thirteenth H200 session, call A (nvidia-h200): bf16 only, ONE process, three rounds, inductor
# untuned (the default): today's ours against the fused decode step's KV_PREFETCH (kvpf), its late
# release (late), both, inductor's kernels on PDL (ipdl), the RMSNorms in the GEMVs (norms), both of
# those, and bf16 without split-K (bfloat16=8.512.2.1.2.0); every row with the kernel timeline of 3
# replayed steps. Then the GPU tests of PDL, the whole-forward decode and the fused step (its
# kvpf/late parameters included).
set -u
W=$OUT/s14a; mkdir -p "$W"
export PYTHONUNBUFFERED=1
deadline=$(( $(date +%s) + ${BUDGET:-520} ))
left() { echo $(( deadline - $(date +%s) )); }
step() { echo "+ $*"; timeout "$(left)" "$@"; echo "exit $? at $(date +%T)"; }
{
  nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,clocks.mem,power.draw,temperature.gpu --format=csv
  R="bf16:ours,bf16:ours+kvpf,bf16:ours+late,bf16:ours+kvpf+late,bf16:ours+ipdl,bf16:ours+norms,bf16:ours+ipdl+norms,bf16:ours+bfloat16=8.512.2.1.2.0"
  timeout 390 python3 benchmarks/decode_roofline.py --runs "$R,$R,$R" --repeats 2 --timeline 3 --out "$W/bf16"
  echo "exit $? at $(date +%T)"
  step python3 -m pytest -q -x -p no:cacheprovider tests/test_kernels_gemv.py tests/test_generate.py tests/test_kv_attention.py \
       -k "pdl or whole_step or fused_decode_step_replays" -o addopts=""
  nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,clocks.mem,power.draw,temperature.gpu --format=csv
} > "$W/log.txt" 2>&1
tar czf "$OUT/s14a.tgz" -C "$OUT" s14a
grep -E "passed|failed|rror|^exit|^\+" "$W/log.txt" | cut -c1-200 | tail -n 20
python3 benchmarks/decode_roofline.py --table-from "$W/bf16/decode_roofline.jsonl" | cut -c1-175
