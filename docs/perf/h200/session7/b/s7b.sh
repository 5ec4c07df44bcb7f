#!/usr/bin/env bash
# Session 16 call B (nvidia-h200-x2): bf16 on the word kernel (v2) against cuBLAS, decode end to end;
# float8 and int8 word-kernel configs by decode time (one process each; --gemv_configs turns inductor's
# on-disk caches off, and the configs now are part of the compiled graph anyway).
set -u
W=$OUT/s7b; mkdir -p "$W"
export PYTHONUNBUFFERED=1 NCCL_NVLS_ENABLE=0
deadline=$(( $(date +%s) + ${BUDGET:-550} ))
left() { echo $(( deadline - $(date +%s) )); }
step() { echo "+ $*"; timeout "$(left)" "$@"; echo "exit $? at $(date +%T)"; }
cfg() { echo "{\"$1\": [$2]}" > "$W/$3.json"; }
cfg bfloat16 "8, 512, 2, 0, 2, 1" bf16_8_512_2
cfg bfloat16 "8, 1024, 4, 0, 2, 1" bf16_8_1024_4
cfg bfloat16 "16, 512, 4, 0, 2, 1" bf16_16_512_4
cfg bfloat16 "4, 1024, 2, 0, 2, 1" bf16_4_1024_2
cfg float8_e4m3fn "16, 512, 4, 1, 2, 1" f8_16_512_4_p
cfg float8_e4m3fn "8, 1024, 4, 1, 2, 1" f8_8_1024_4_p
cfg float8_e4m3fn "8, 512, 2, 1, 2, 1" f8_8_512_2_p
cfg int8 "8, 512, 2, 1, 2, 1" i8_8_512_2_p
(
  export CUDA_VISIBLE_DEVICES=0
  step python3 benchmarks/decode_roofline.py --runs bf16:ours --repeats 2 --out "$W/roofline_bf16_cublas"
  for c in bf16_8_512_2 bf16_8_1024_4 bf16_16_512_4 bf16_4_1024_2; do
    step python3 benchmarks/decode_roofline.py --ours_bf16 gemv --gemv_configs "$W/$c.json" --runs bf16:ours --repeats 2 --out "$W/roofline_$c"
  done
  step python3 benchmarks/profile_decode_step.py --scheme none --layers 8 --kv_caches prefix --positions 200 --cache_size 208 --top 3 --steps 20 --gemv_configs "$W/bf16_8_512_2.json"
) > "$W/gpu0.log" 2>&1 &
(
  export CUDA_VISIBLE_DEVICES=1
  step python3 -m pytest -q -p no:cacheprovider tests/test_kernels_gemv.py
  for c in f8_8_512_2_p f8_16_512_4_p f8_8_1024_4_p i8_8_512_2_p; do
    step python3 benchmarks/decode_roofline.py --gemv_configs "$W/$c.json" --runs int8wo:ours,float8wo:ours --repeats 2 --out "$W/roofline_$c"
  done
  step python3 benchmarks/gemv_sweep.py --kinds bfloat16 --out "$W/sweep_bf16"
) > "$W/gpu1.log" 2>&1 &
wait
tar czf "$OUT/s7b.tgz" -C "$OUT" s7b
echo "== gpu0"; grep -E "^\| [a-z]|^exit|^\+|GB/s|_gemv|nvjet|gemm" "$W/gpu0.log" | cut -c1-200 | tail -n 60
echo "== gpu1"; grep -E "passed|failed|^\| [a-z]|^exit|^\+|<- best|cuBLAS|GEMV_CONFIGS =|FAILED|MISMATCH|failure|torch.compile|sweep took" "$W/gpu1.log" | cut -c1-250 | tail -n 40
