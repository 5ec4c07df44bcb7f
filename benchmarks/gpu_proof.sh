#!/usr/bin/env bash
# One device call on a 2-GPU H200 host that proves the GPU paths of the package:
#   GPU 0: benchmarks/decode_roofline.py (issue 6), plain torchao path vs ours, alone on its GPU.
#   GPU 1: a synthetic Llama-3.1-8B checkpoint through the real CLIs: llama.eval on the local
#          task for bf16 and int4wo-64 (issue 5), then llama.generate --compile for bf16,
#          int4wo-64 and int8wo (issue 3).
# Every step has a deadline so the script ends (and packs $OUT/proof.tgz) inside BUDGET seconds.
#   BUDGET=520 bash benchmarks/gpu_proof.sh
set -u
OUT=${OUT:-/tmp/proof-out}
BUDGET=${BUDGET:-520}
ROOFLINE_RUNS=${ROOFLINE_RUNS:-int8wo:ours,int4wo-128:ours,bf16:ours,float8wo:ours,bf16:plain,int4wo-128:plain,float8dq-row:plain}
work=$OUT/work; mkdir -p "$work"
deadline=$(( $(date +%s) + BUDGET - 25 ))
left() { echo $(( deadline - $(date +%s) )); }
export PYTHONUNBUFFERED=1

nvidia-smi --query-gpu=index,name,driver_version,clocks.sm,clocks.mem,memory.total --format=csv > "$work/nvidia-smi.csv"

(
  export CUDA_VISIBLE_DEVICES=0
  echo "+ python3 benchmarks/decode_roofline.py --runs $ROOFLINE_RUNS --repeats 2 --out $work/roofline"
  timeout "$(left)" python3 benchmarks/decode_roofline.py --runs "$ROOFLINE_RUNS" --repeats 2 --out "$work/roofline"
  echo "exit $?"
  python3 benchmarks/decode_roofline.py --table-from "$work/roofline/decode_roofline.jsonl"
) > "$work/gpu0-roofline.log" 2>&1 &

(
  export CUDA_VISIBLE_DEVICES=1
  ckpt=/tmp/ckpt-llama31-8b
  step() { echo "+ $*"; timeout "$(left)" "$@"; echo "exit $?"; }
  step python3 -m llama.checkpoint synthesize --model meta-llama/Llama-3.1-8B --out $ckpt --seed 0
  for t in none int4wo-64; do
    step python3 -m llama.eval --checkpoint $ckpt --technique $t --task llama_local_ppl --device cuda --out "$work/eval-$t.json"
  done
  for t in none int4wo-64 int8wo; do
    step python3 -m llama.generate --checkpoint $ckpt --technique $t --compile --prefill_size 6 \
      --max_new_tokens 200 --num_samples 3 --temperature 0 --device cuda --out "$work/generate-$t.json"
  done
) > "$work/gpu1-package.log" 2>&1 &

wait
tar czf "$OUT/proof.tgz" -C "$OUT" work
tail -n 30 "$work/gpu0-roofline.log"; grep -E "^\+|^exit|tok/s|error" "$work/gpu1-package.log" | tail -n 40
