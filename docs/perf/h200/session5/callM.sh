#!/usr/bin/env bash
# Session 14 call M (nvidia-h200-x2): the issue-6 table with split-K on (GEMV_CONFIGS int8 and int4).
# GPU0: decode_roofline in ONE process: plain rows first (int8wo, int4wo-128), then ours for all four.
# GPU1: float8 GEMV sweep (split-K off and on), then float8wo and int8wo ours with its pick, in one
#       process; then llama.generate --compile block on a synthetic 8B checkpoint (int8wo-triton and
#       int4wo-triton-128 with the prefix cache): what the workflow's JSON carries.
set -u
W=$OUT/m; mkdir -p "$W"
export PYTHONUNBUFFERED=1 NCCL_NVLS_ENABLE=0
deadline=$(( $(date +%s) + ${BUDGET:-500} ))
left() { echo $(( deadline - $(date +%s) )); }
step() { echo "+ $*"; timeout "$(left)" "$@"; echo "exit $? at $(date +%T)"; }
(
  export CUDA_VISIBLE_DEVICES=0
  step python3 benchmarks/decode_roofline.py --runs int8wo:plain,int4wo-128:plain,int8wo:ours,int4wo-128:ours,float8wo:ours,bf16:ours --repeats 2 --out "$W/roofline"
) > "$W/gpu0.log" 2>&1 &
(
  export CUDA_VISIBLE_DEVICES=1
  step python3 benchmarks/gemv_sweep.py --kinds float8_e4m3fn --out "$W/sweep_float8"
  step python3 benchmarks/decode_roofline.py --gemv_configs "$W/sweep_float8/gemv_configs.json" --runs float8wo:ours,int8wo:ours --repeats 2 --out "$W/roofline_float8"
  step python3 -m llama.checkpoint synthesize --model meta-llama/Llama-3.1-8B --out /tmp/ckpt8b --seed 0
  for t in int8wo-triton+kv-prefix int4wo-triton-128+kv-prefix; do
    step python3 -m llama.generate --checkpoint /tmp/ckpt8b --technique $t --compile block --prefill_size 6 --max_new_tokens 200 --temperature 0 --num_samples 3 --device cuda --out "$W/generate-block-$t.json"
  done
) > "$W/gpu1.log" 2>&1 &
wait
tar czf "$OUT/m.tgz" -C "$OUT" m
echo "== gpu0"; grep -E "^\||^exit|^NVIDIA|^GEMV" "$W/gpu0.log" | cut -c1-250
echo "== gpu1"; grep -E "^  float8|^\||^exit|^NVIDIA|GEMV_CONFIGS =|FAILED|MISMATCH|rror" "$W/gpu1.log" | cut -c1-250 | tail -n 30
for f in "$W"/generate-block-*.json; do python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(sys.argv[1].split('/')[-1], {k: d.get(k) for k in ('status','decode_tok_s_median','decode_tok_s_cv','warmup_s','peak_alloc_bytes','bandwidth_fraction','copy_bandwidth_gb_s')})" "$f"; done
