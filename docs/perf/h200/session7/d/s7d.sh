#!/usr/bin/env bash
# Session 16 call D (nvidia-h200-x2): the issue-6 table with float8 and bf16 GEMV entries on the word kernel.
# GPU0: decode_roofline in ONE process: plain rows for every technique, then ours; int8wo and float8wo ours
#       twice, interleaved.
# GPU1: the CUDA tests (gemv kernels, generate, techniques, KV attention); the decode attention kernel
#       alone at a 200-token context (splits 1-4 added to the sweep); llama.generate --compile block with
#       float8wo-triton on a synthetic 8B checkpoint (what the workflow's JSON carries).
set -u
W=$OUT/s7d; mkdir -p "$W"
export PYTHONUNBUFFERED=1 NCCL_NVLS_ENABLE=0
deadline=$(( $(date +%s) + ${BUDGET:-560} ))
left() { echo $(( deadline - $(date +%s) )); }
step() { echo "+ $*"; timeout "$(left)" "$@"; echo "exit $? at $(date +%T)"; }
(
  export CUDA_VISIBLE_DEVICES=0
  step python3 benchmarks/decode_roofline.py --runs int8wo:plain,int4wo-128:plain,float8wo:plain,bf16:plain,float8dq-row:plain,int8wo:ours,float8wo:ours,int4wo-128:ours,bf16:ours,int8wo:ours,float8wo:ours --repeats 2 --out "$W/roofline"
) > "$W/gpu0.log" 2>&1 &
(
  export CUDA_VISIBLE_DEVICES=1
  step python3 -m pytest -q -rs -p no:cacheprovider tests/test_kernels_gemv.py tests/test_generate.py tests/test_techniques.py tests/test_kv_attention.py
  step python3 benchmarks/long_context.py --kernel_sweep 200 --out "$W/attention_200.md"
  step python3 -m llama.checkpoint synthesize --model meta-llama/Llama-3.1-8B --out /tmp/ckpt8b --seed 0
  t=float8wo-triton+kv-prefix
  step python3 -m llama.generate --checkpoint /tmp/ckpt8b --technique $t --compile block --prefill_size 6 --max_new_tokens 200 --temperature 0 --num_samples 3 --device cuda --out "$W/generate-block-$t.json"
) > "$W/gpu1.log" 2>&1 &
wait
tar czf "$OUT/s7d.tgz" -C "$OUT" s7d
echo "== gpu0"; grep -E "^\||^exit|^NVIDIA" "$W/gpu0.log" | cut -c1-250
echo "== gpu1"; grep -E "passed|failed|SKIPPED|^exit|^\+|rror" "$W/gpu1.log" | cut -c1-250 | tail -n 30
grep -A8 "best decode launch" "$W/attention_200.md"
for f in "$W"/generate-block-*.json; do python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(sys.argv[1].split('/')[-1], {k: d.get(k) for k in ('status','decode_tok_s_median','decode_tok_s_cv','warmup_s','peak_alloc_bytes','bandwidth_fraction','copy_bandwidth_gb_s')})" "$f"; done
