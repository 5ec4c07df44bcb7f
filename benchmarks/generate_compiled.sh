#!/usr/bin/env bash
# Issue 3 on the GPU: llama.generate --compile on synthetic Llama-3.1-8B for bf16, int4wo-64 and
# int8wo, one JSON each. With two GPUs, two techniques run at once, one per GPU (llama.gpus).
#   bash benchmarks/generate_compiled.sh OUTDIR [DEADLINE_EPOCH_S]
set -u
out=${1:?OUTDIR}; deadline=${2:-$(( $(date +%s) + 3600 ))}; mkdir -p "$out"
ckpt=${CKPT:-/tmp/ckpt-llama31-8b}
[ -f $ckpt/meta.json ] || python3 -m llama.checkpoint synthesize --model meta-llama/Llama-3.1-8B --out $ckpt --seed 0
run() {  # technique
  echo "+ python -m llama.generate --checkpoint $ckpt --technique $1 --compile --prefill_size 6 --max_new_tokens 200 --num_samples 3 --temperature 0 --device cuda"
  timeout $(( deadline - $(date +%s) )) python3 -m llama.gpus run -- python3 -m llama.generate --checkpoint $ckpt \
    --technique $1 --compile --prefill_size 6 --max_new_tokens 200 --num_samples 3 --temperature 0 --device cuda \
    --out "$out/generate-$1.json"
  echo "exit $?"
}
(run none; run int8wo) > "$out/gpu-a.log" 2>&1 &
sleep 2
run int4wo-64 > "$out/gpu-b.log" 2>&1 &
wait
