#!/usr/bin/env bash
# Session 17 call D (nvidia-h200): the fused decode step at (128, 4, 2); its GPU tests, then the headline
# in ONE process: plain and ours for bf16, int8wo, int4wo-128, ours for float8wo (its plain path warms
# up ~300 s), float8dq-row plain.
set -u
W=$OUT/s8d; mkdir -p "$W"
export PYTHONUNBUFFERED=1
deadline=$(( $(date +%s) + ${BUDGET:-560} ))
left() { echo $(( deadline - $(date +%s) )); }
step() { echo "+ $*"; timeout "$(left)" "$@"; echo "exit $? at $(date +%T)"; }
{
  step timeout 100 python3 -m pytest -q -p no:cacheprovider tests/test_kv_attention.py tests/test_generate.py -k "gpu or fused or argmax or replay or compiled"
  step python3 benchmarks/decode_roofline.py --runs bf16:plain,int8wo:plain,int4wo-128:plain,float8dq-row:plain,bf16:ours,int8wo:ours,float8wo:ours,int4wo-128:ours,bf16:ours --repeats 2 --out "$W/roofline"
} > "$W/log.txt" 2>&1
tar czf "$OUT/s8d.tgz" -C "$OUT" s8d
grep -E "passed|failed|rror|^exit|^\+" "$W/log.txt" | cut -c1-200 | tail -n 30
grep -E "^\| [a-z]" "$W/log.txt" | cut -c1-250
