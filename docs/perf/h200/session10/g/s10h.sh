#!/usr/bin/env bash
# Tenth H200 session, call G (nvidia-h200): llama.generate --compile block with the prefix KV cache (+kv-prefix,
# what decode_roofline.py's ours path runs), on a synthetic Llama-3.1-8B checkpoint: the generate JSON's
# decode rate for int4wo-triton-128 and int8wo-triton under the committed defaults.
set -u
W=$OUT/s10h; mkdir -p "$W"
export PYTHONUNBUFFERED=1
deadline=$(( $(date +%s) + ${BUDGET:-220} ))
left() { echo $(( deadline - $(date +%s) )); }
step() { echo "+ $*"; timeout "$(left)" "$@"; echo "exit $? at $(date +%T)"; }
ckpt=/tmp/ckpt-llama31-8b
{
  step python3 -m llama.checkpoint synthesize --model meta-llama/Llama-3.1-8B --out $ckpt --seed 0
  for t in int4wo-triton-128+kv-prefix int8wo-triton+kv-prefix; do
    step python3 -m llama.generate --checkpoint $ckpt --technique $t --compile block --prefill_size 6 \
      --max_new_tokens 200 --temperature 0 --num_samples 3 --device cuda --out "$W/generate-block-$t.json"
  done
} > "$W/log.txt" 2>&1
tar czf "$OUT/s10h.tgz" -C "$OUT" s10h
grep -E "rror|^exit|^\+|tok/s" "$W/log.txt" | cut -c1-220 | tail -n 30
