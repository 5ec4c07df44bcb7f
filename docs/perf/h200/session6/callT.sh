#!/usr/bin/env bash
# Session 15 call T (nvidia-h200-x2): the test suite's CUDA paths on the H200, at HEAD.
# GPU0: tests/test_generate.py whole (call N's run was cut off after 35 passed).
# GPU1: the test files with CUDA-only tests: gemv kernels, KV attention, techniques, GPUs.
set -u
W=$OUT/t; mkdir -p "$W"
export PYTHONUNBUFFERED=1
( export CUDA_VISIBLE_DEVICES=0
  timeout 540 python3 -m pytest -q -rs -p no:cacheprovider tests/test_generate.py; echo "exit $?" ) > "$W/gpu0_test_generate.log" 2>&1 &
( export CUDA_VISIBLE_DEVICES=1
  timeout 540 python3 -m pytest -q -rs -p no:cacheprovider tests/test_kernels_gemv.py tests/test_kv_attention.py tests/test_techniques.py tests/test_gpus.py; echo "exit $?" ) > "$W/gpu1_tests.log" 2>&1 &
wait
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > "$W/nvidia-smi.csv"
for f in "$W"/*.log; do echo "== $f"; tail -n 25 "$f"; done
tar czf "$OUT/t.tgz" -C "$OUT" t && rm -rf "$W"
