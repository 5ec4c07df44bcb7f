#!/usr/bin/env bash
# Session 15 call V (nvidia-h200): tests/test_generate.py on the H200 with the host-memory check
# (calls T and U: the OOM killer ended test_oom_is_a_result; this host overcommits memory).
set -u
W=$OUT/v; mkdir -p "$W"
export PYTHONUNBUFFERED=1
cat /proc/sys/vm/overcommit_memory > "$W/overcommit_memory.txt"
timeout 420 python3 -m pytest -v -rs -p no:cacheprovider --durations=15 tests/test_generate.py > "$W/test_generate.log" 2>&1; echo "exit $?" >> "$W/test_generate.log"
grep -E "PASSED|FAILED|ERROR|SKIPPED|exit|passed|failed|slowest|^[0-9.]+s " "$W/test_generate.log" | tail -n 45 | cut -c1-170
tar czf "$OUT/v.tgz" -C "$OUT" v && rm -rf "$W"
