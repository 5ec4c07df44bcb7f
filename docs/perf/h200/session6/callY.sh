#!/usr/bin/env bash
# Session 15 call Y (nvidia-h200, warm after call X): call X's float8 configs all gave the layers' GEMVs the
# same times as today's entry, only the (uncompiled) head changed. Is inductor's on-disk FX graph cache
# handing back the graph compiled with the first config? The same runs with the caches off.
set -u
W=$OUT/y; mkdir -p "$W"
export PYTHONUNBUFFERED=1 TORCHINDUCTOR_FX_GRAPH_CACHE=0 TORCHINDUCTOR_AUTOGRAD_CACHE=0
for c in "16,1024,8,0,1" "8,1024,4,0,1"; do
  n=f8_${c//,/_}; echo "{\"float8_e4m3fn\": [$c]}" > "$W/$n.json"
  timeout 100 python3 benchmarks/profile_decode_step.py --scheme float8 --layers 8 --kv_caches prefix --positions 200 --cache_size 208 --top 2 --steps 20 --gemv_configs "$W/$n.json" > "$W/profile_$n.log" 2>&1
  echo "exit $?" >> "$W/profile_$n.log"
  echo "== $n (caches off)"; sed -n '/compiled:/,$p' "$W/profile_$n.log" | cut -c1-150
done
ls /tmp/torchinductor_$(whoami) 2>/dev/null | head -3
tar czf "$OUT/y.tgz" -C "$OUT" y && rm -rf "$W"
