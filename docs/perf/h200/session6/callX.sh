#!/usr/bin/env bash
# Session 15 call X (nvidia-h200): float8's GEMV time by linear under three other configs (call W: today's
# (4, 1024, 4) loses to int8 v2 on w13 and the output head).
set -u
W=$OUT/x; mkdir -p "$W"
export PYTHONUNBUFFERED=1
for c in "8,1024,4,0,1" "16,1024,8,0,1" "4,2048,4,0,1"; do
  n=f8_${c//,/_}; echo "{\"float8_e4m3fn\": [$c]}" > "$W/$n.json"
  timeout 100 python3 benchmarks/profile_decode_step.py --scheme float8 --layers 8 --kv_caches prefix --positions 200 --cache_size 208 --top 2 --steps 20 --gemv_configs "$W/$n.json" > "$W/profile_$n.log" 2>&1
  echo "exit $?" >> "$W/profile_$n.log"
  echo "== $n"; sed -n '/compiled:/,$p' "$W/profile_$n.log" | cut -c1-150
done
tar czf "$OUT/x.tgz" -C "$OUT" x && rm -rf "$W"
