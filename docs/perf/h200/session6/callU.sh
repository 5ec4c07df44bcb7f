#!/usr/bin/env bash
# Session 15 call U (nvidia-h200-x2): tests/test_generate.py on the H200 again, verbose, to name the
# test that call T's run died in (SIGKILL after 12 passed), with the host's memory watched.
set -u
W=$OUT/u; mkdir -p "$W"
export PYTHONUNBUFFERED=1 CUDA_VISIBLE_DEVICES=0
( while sleep 5; do echo "$(date +%T) $(free -g | awk '/Mem:/ {print "used_GiB=" $3, "avail_GiB=" $7}')"; done ) > "$W/free.log" 2>&1 &
watch=$!
timeout 480 python3 -m pytest -v -rs -p no:cacheprovider --durations=20 tests/test_generate.py > "$W/test_generate.log" 2>&1; echo "exit $?" >> "$W/test_generate.log"
kill $watch
(dmesg 2>/dev/null | grep -iE "killed process|out of memory" | tail -5) > "$W/dmesg_oom.txt"
grep -E "PASSED|FAILED|ERROR|SKIPPED|Killed|exit|passed|failed" "$W/test_generate.log" | tail -n 60 | cut -c1-160
tail -n 5 "$W/free.log"; cat "$W/dmesg_oom.txt"
tar czf "$OUT/u.tgz" -C "$OUT" u && rm -rf "$W"
