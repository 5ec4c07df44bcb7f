#!/usr/bin/env bash
# Session 13 call G (nvidia-h200-x2): the issue-6 measurement.
# GPU0: float8 GEMV sweep, then decode_roofline in ONE process with its pick: plain rows first (a
#       plain row run after ours rows in the same process once came out at a tenth of its speed),
#       then ours; then a second process of the ours rows (process-to-process spread).
# GPU1: GPU tests, then llama.generate --compile block on a synthetic 8B checkpoint (int8wo-triton
#       with the prefix cache, float8wo-triton, int4wo-triton-128): what the workflow's JSON carries.
set -u
W=$OUT/g; mkdir -p "$W"
export PYTHONUNBUFFERED=1 NCCL_NVLS_ENABLE=0
deadline=$(( $(date +%s) + ${BUDGET:-540} ))
left() { echo $(( deadline - $(date +%s) )); }
step() { echo "+ $*"; timeout "$(left)" "$@"; echo "exit $? at $(date +%T)"; }
(
  export CUDA_VISIBLE_DEVICES=0
  step python3 benchmarks/gemv_sweep.py --kinds float8_e4m3fn --out "$W/gemv_sweep"
  step python3 benchmarks/decode_roofline.py --gemv_configs "$W/gemv_sweep/gemv_configs.json" --runs bf16:plain,int8wo:plain,int4wo-128:plain,float8wo:plain,float8dq-row:plain,bf16:ours,int8wo:ours,int4wo-128:ours,float8wo:ours --repeats 2 --out "$W/roofline"
  step python3 benchmarks/decode_roofline.py --gemv_configs "$W/gemv_sweep/gemv_configs.json" --runs bf16:ours,int8wo:ours,int4wo-128:ours,float8wo:ours --repeats 2 --out "$W/roofline_ours_again"
) > "$W/gpu0.log" 2>&1 &
(
  export CUDA_VISIBLE_DEVICES=1
  step python3 -m pytest -q -p no:cacheprovider tests/test_kernels_gemv.py tests/test_kv_attention.py tests/test_generate.py
  step python3 -m llama.checkpoint synthesize --model meta-llama/Llama-3.1-8B --out /tmp/ckpt8b --seed 0
  for t in int8wo-triton+kv-prefix float8wo-triton+kv-prefix int4wo-triton-128+kv-prefix; do
    step python3 -m llama.generate --checkpoint /tmp/ckpt8b --technique $t --compile block --prefill_size 6 --max_new_tokens 200 --temperature 0 --num_samples 3 --device cuda --out "$W/generate-block-$t.json"
  done
) > "$W/gpu1.log" 2>&1 &
wait
tar czf "$OUT/g.tgz" -C "$OUT" g
echo "== gpu0"; cat "$W/gemv_sweep/summary.txt" 2>/dev/null | cut -c1-200 | head -12; grep -E "^\||^exit|^NVIDIA|^GEMV" "$W/gpu0.log" | cut -c1-250
echo "== gpu1"; grep -E "passed|failed|^exit|rror" "$W/gpu1.log" | cut -c1-200 | tail -n 20
for f in "$W"/generate-block-*.json; do python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(sys.argv[1].split('/')[-1], {k: d.get(k) for k in ('status','decode_tok_s_median','decode_tok_s_cv','warmup_s','peak_alloc_bytes','bandwidth_fraction','copy_bandwidth_gb_s')})" "$f"; done
