#!/usr/bin/env bash
# Session 16 call E (nvidia-h200, what was left of the device time): bf16 plain against bf16 ours on
# the word kernel (now decode_roofline's default for bf16) in ONE process, then int8wo and float8wo ours.
set -u
W=$OUT/s7e; mkdir -p "$W"
export PYTHONUNBUFFERED=1
timeout 165 python3 benchmarks/decode_roofline.py --runs bf16:plain,bf16:ours,int8wo:ours,float8wo:ours --repeats 2 --out "$W/roofline" > "$W/roofline.log" 2>&1
echo "exit $?" >> "$W/roofline.log"
tar czf "$OUT/s7e.tgz" -C "$OUT" s7e
grep -E "^\||^exit|^device" "$W/roofline.log" | cut -c1-250
python3 - "$W/roofline/decode_roofline.jsonl" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    print(r["technique"], r["path"], r.get("linears"), round(r["decode_tok_s"], 1), round(r["warmup_s"], 1))
PY
