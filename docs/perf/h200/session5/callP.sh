#!/usr/bin/env bash
# Session 14 call P (nvidia-h200): the review commit's GEMV kernel tests on the GPU.
set -u
mkdir -p "$OUT/p"
timeout 140 python3 -m pytest -q -p no:cacheprovider tests/test_kernels_gemv.py > "$OUT/p/pytest.log" 2>&1
echo "exit $?" >> "$OUT/p/pytest.log"
tail -n 3 "$OUT/p/pytest.log"
