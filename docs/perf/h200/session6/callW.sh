#!/usr/bin/env bash
# Session 15 call W (nvidia-h200): the decode step's GEMV time split by linear (profile_decode_step's new
# per-linear lines), int8 v2 against float8 rowwise against int4 v2, today's GEMV_CONFIGS, 8 layers.
set -u
W=$OUT/w; mkdir -p "$W"
export PYTHONUNBUFFERED=1
for s in int8 float8 int4; do
  timeout 150 python3 benchmarks/profile_decode_step.py --scheme $s --layers 8 --kv_caches prefix --positions 200 --cache_size 208 --top 3 --steps 20 > "$W/profile_$s.log" 2>&1
  echo "exit $?" >> "$W/profile_$s.log"
done
for s in int8 float8 int4; do echo "== $s"; sed -n '/compiled:/,$p' "$W/profile_$s.log" | grep -v "^ .* x  0 " | cut -c1-150; done
tar czf "$OUT/w.tgz" -C "$OUT" w && rm -rf "$W"
