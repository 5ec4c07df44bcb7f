#!/usr/bin/env bash
# Session 15 call S (nvidia-h200-x2): GEMV configs tuned by decode time, not by the GEMV sweep.
# Candidates pre-screened by their sm_90 loop under Triton 3.6 (the device's): fewer instructions per byte.
# GPU0: float8wo ours, one process per float8 config (today's first and last), int8wo today's for reference.
# GPU1: int8wo ours, one process per int8 v2 config (today's first and last), float8wo today's for reference.
set -u
W=$OUT/s; mkdir -p "$W"
export PYTHONUNBUFFERED=1
deadline=$(( $(date +%s) + ${BUDGET:-540} ))
left() { echo $(( deadline - $(date +%s) )); }
step() { echo "+ $*"; timeout "$(left)" "$@"; echo "exit $? at $(date +%T)"; }
run() {  # run NAME TECH KIND CONFIG
  echo "{\"$3\": $4}" > "$W/$1.json"
  step python3 benchmarks/decode_roofline.py --gemv_configs "$W/$1.json" --runs $2:ours --repeats 2 --out "$W/roofline_$1"
}
(
  export CUDA_VISIBLE_DEVICES=0
  run f8_today float8wo float8_e4m3fn "[4, 1024, 4, 0, 1]"
  run f8_8_1024_4 float8wo float8_e4m3fn "[8, 1024, 4, 0, 1]"
  run f8_8_1024_4_split float8wo float8_e4m3fn "[8, 1024, 4, 0, 1, 1]"
  run f8_8_2048_8 float8wo float8_e4m3fn "[8, 2048, 8, 0, 1]"
  run f8_16_1024_8_split float8wo float8_e4m3fn "[16, 1024, 8, 0, 1, 1]"
  run f8_4_1024_2 float8wo float8_e4m3fn "[4, 1024, 2, 0, 1]"
  run f8_4_2048_4 float8wo float8_e4m3fn "[4, 2048, 4, 0, 1]"
  run f8_8_512_2_split float8wo float8_e4m3fn "[8, 512, 2, 0, 1, 1]"
  run i8_today_gpu0 int8wo int8 "[8, 512, 2, 0, 2, 1]"
  run f8_today_again float8wo float8_e4m3fn "[4, 1024, 4, 0, 1]"
) > "$W/gpu0.log" 2>&1 &
(
  export CUDA_VISIBLE_DEVICES=1
  run i8_today int8wo int8 "[8, 512, 2, 0, 2, 1]"
  run i8_16_1024_4_split int8wo int8 "[16, 1024, 4, 0, 2, 1]"
  run i8_32_1024_8_split int8wo int8 "[32, 1024, 8, 0, 2, 1]"
  run i8_16_512_2_split int8wo int8 "[16, 512, 2, 0, 2, 1]"
  run i8_32_512_4_split int8wo int8 "[32, 512, 4, 0, 2, 1]"
  run i8_16_2048_8_split int8wo int8 "[16, 2048, 8, 0, 2, 1]"
  run f8_today_gpu1 float8wo float8_e4m3fn "[4, 1024, 4, 0, 1]"
  run i8_today_again int8wo int8 "[8, 512, 2, 0, 2, 1]"
) > "$W/gpu1.log" 2>&1 &
wait
for g in 0 1; do echo "== gpu$g"; grep -E "^\+ |^\| (int|float)|^exit" "$W/gpu$g.log" | sed -E 's/^\+ .*--gemv_configs [^ ]*\/([a-z0-9_]+)\.json.*/\1/' | paste - - - | awk '{print $1, $6, $8, $NF}'; done
