#!/usr/bin/env bash
# Eleventh H200 session, call A (nvidia-h200): the fused decode step's idle SMs pulling wo's (and w13's)
# weights into L2 (llama/kernels/l2_prefetch.py). Settings interleaved in ONE process, two rounds; then the
# quantized techniques with it off and on; then per-kernel profiles of bf16 with it off and on.
set -u
W=$OUT/s12a; mkdir -p "$W"
export PYTHONUNBUFFERED=1
deadline=$(( $(date +%s) + ${BUDGET:-540} ))
left() { echo $(( deadline - $(date +%s) )); }
step() { echo "+ $*"; timeout "$(left)" "$@"; echo "exit $? at $(date +%T)"; }
{
  nvidia-smi --query-gpu=name,clocks.max.sm,clocks.max.mem,power.limit --format=csv
  python3 -c "import torch; print(torch.cuda.get_device_properties(0))"
  R=""
  for s in 0 16 24 32 24+8 lines:24 16+16; do R="$R,bf16:ours-l2=$s"; done
  step python3 benchmarks/decode_roofline.py --runs "${R:1}${R}" --repeats 2 --out "$W/bf16"
  Q=""
  for t in int4wo-128 int8wo float8wo; do for s in 0 16+8 8+16; do Q="$Q,$t:ours-l2=$s"; done; done
  step python3 benchmarks/decode_roofline.py --runs "${Q:1}${Q}" --repeats 2 --out "$W/quant"
  for s in 0 24+8; do
    echo "profile LLAMA_L2_PREFETCH=$s"
    LLAMA_L2_PREFETCH=$s step python3 benchmarks/profile_decode_step.py --scheme none --layers 8 --kv_caches prefix --positions 200 --cache_size 208 --top 14 --steps 20
  done
  LLAMA_L2_PREFETCH=24,8 step python3 -m pytest -q -x tests/test_kv_attention.py -k "decode_step or fused or prefetch" -p no:cacheprovider
} > "$W/log.txt" 2>&1
tar czf "$OUT/s12a.tgz" -C "$OUT" s12a
grep -E "passed|failed|rror|^exit|^\+" "$W/log.txt" | cut -c1-200 | tail -n 20
grep -E "^device|^\| [a-z]|^profile|^==|GEMV kernel|^ +[0-9.]+ ms" "$W/log.txt" | cut -c1-150
