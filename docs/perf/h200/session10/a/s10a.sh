#!/usr/bin/env bash
# Tenth H200 session, call A (nvidia-h200): the rewritten int4 v2 loop (6.44 instr/byte under Triton 3.6, was 8.90)
# against the ninth session's kernel (commit e235afc's gemv.py), one process each, inductor's caches off,
# GPU tests of the int4 kernels first; then new / old / new; then two launch shapes by decode rate (more in s10b.sh).
set -u
W=$OUT/s10a; mkdir -p "$W"
export PYTHONUNBUFFERED=1 TORCHINDUCTOR_FX_GRAPH_CACHE=0 TORCHINDUCTOR_AUTOGRAD_CACHE=0
deadline=$(( $(date +%s) + ${BUDGET:-560} ))
left() { echo $(( deadline - $(date +%s) )); }
step() { echo "+ $*"; timeout "$(left)" "$@"; echo "exit $? at $(date +%T)"; }
OLD=/tmp/old_tree; rm -rf $OLD; mkdir -p $OLD; cp -r llama benchmarks $OLD/; cp .device/s10/gemv_e235afc.py $OLD/llama/kernels/gemv.py
{
  step timeout 150 python3 -m pytest -q -p no:cacheprovider tests/test_kernels_gemv.py -k "int4 or pdl"
  step python3 benchmarks/decode_roofline.py --runs int4wo-128:ours,int4wo-128:ours-serial --repeats 2 --out "$W/new1"
  (cd $OLD && PYTHONPATH=/tmp/site:$OLD step python3 benchmarks/decode_roofline.py --runs int4wo-128:ours,int4wo-128:ours-serial --repeats 2 --out "$W/old")
  step python3 benchmarks/decode_roofline.py --runs int4wo-128:ours --repeats 2 --out "$W/new2"
  for c in 32_512_2_2_0_1 64_512_4_2_0_1; do
    step python3 benchmarks/decode_roofline.py --runs int4wo-128:ours --repeats 2 --gemv_configs .device/s10/int4_$c.json --out "$W/$c"
  done
} > "$W/log.txt" 2>&1
tar czf "$OUT/s10a.tgz" -C "$OUT" s10a
grep -E "passed|failed|rror|^exit|^\+" "$W/log.txt" | cut -c1-200 | tail -n 30
grep -E "^\| [a-z]" "$W/log.txt" | cut -c1-250
