#!/usr/bin/env bash
# Tenth H200 session, call F (nvidia-h200): accuracy of the int4 path that decodes above 450 tok/s
# (int4wo-triton-128, our GEMV; int4wo-128, torchao's) against bf16 on the local perplexity task, through
# llama.eval on a synthetic Llama-3.1-8B checkpoint; then llama.generate --compile block on it, whose JSON
# carries the decode rate and the kernel settings (PDL off, the new int4 entry).
set -u
W=$OUT/s10g; mkdir -p "$W"
export PYTHONUNBUFFERED=1
deadline=$(( $(date +%s) + ${BUDGET:-420} ))
left() { echo $(( deadline - $(date +%s) )); }
step() { echo "+ $*"; timeout "$(left)" "$@"; echo "exit $? at $(date +%T)"; }
ckpt=/tmp/ckpt-llama31-8b
{
  step python3 -m llama.checkpoint synthesize --model meta-llama/Llama-3.1-8B --out $ckpt --seed 0
  for t in int4wo-triton-128 none int4wo-128; do
    step python3 -m llama.eval --checkpoint $ckpt --technique $t --task llama_local_ppl --device cuda --out "$W/eval-$t.json"
  done
  step python3 -m llama.generate --checkpoint $ckpt --technique int4wo-triton-128 --compile block --prefill_size 6 \
    --max_new_tokens 200 --temperature 0 --num_samples 3 --device cuda --out "$W/generate-block-int4wo-triton-128.json"
} > "$W/log.txt" 2>&1
tar czf "$OUT/s10g.tgz" -C "$OUT" s10g
grep -E "rror|^exit|^\+|tok/s|perplexity" "$W/log.txt" | cut -c1-220 | tail -n 30
for f in "$W"/*.json; do python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(sys.argv[1].split('/')[-1], d.get('status'), d.get('metrics') or {k: d.get(k) for k in ('decode_tok_s_median','warmup_s','peak_alloc_bytes','kernel_settings')})" "$f"; done
