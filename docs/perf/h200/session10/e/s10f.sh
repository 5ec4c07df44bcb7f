#!/usr/bin/env bash
# Tenth H200 session, call E (nvidia-h200): bf16 (89% of the copy bandwidth in call D, goal 90%): which kernels to
# launch with PDL, in ONE process, two rounds; then other word-kernel entries for bf16, one process each.
set -u
W=$OUT/s10f; mkdir -p "$W"
export PYTHONUNBUFFERED=1 TORCHINDUCTOR_FX_GRAPH_CACHE=0 TORCHINDUCTOR_AUTOGRAD_CACHE=0
deadline=$(( $(date +%s) + ${BUDGET:-450} ))
left() { echo $(( deadline - $(date +%s) )); }
step() { echo "+ $*"; timeout "$(left)" "$@"; echo "exit $? at $(date +%T)"; }
{
  step python3 benchmarks/decode_roofline.py --runs bf16:ours,bf16:ours-pdl-step,bf16:ours-pdl-gemv,bf16:ours-pdl-all,bf16:ours-pdl-step,bf16:ours --repeats 2 --out "$W/pdl"
  for c in 8_512_2_1_2_1 16_512_2_0_2_1 8_1024_4_0_2_1 8_256_1_0_2_1 16_1024_4_0_2_1; do
    echo "config $c"
    step python3 benchmarks/decode_roofline.py --runs bf16:ours --repeats 2 --gemv_configs .device/s10/bf16_$c.json --out "$W/$c"
  done
} > "$W/log.txt" 2>&1
tar czf "$OUT/s10f.tgz" -C "$OUT" s10f
grep -E "passed|failed|rror|^exit|^\+" "$W/log.txt" | cut -c1-200 | tail -n 30
grep -E "^device|^config|^\| [a-z]" "$W/log.txt" | cut -c1-150
