#!/usr/bin/env bash
# Session 16 call C (nvidia-h200-x2):
# GPU0: why the bf16 word-kernel step has an RMSNorm kernel of 13 us a layer (int8's: 2.75 us): every kernel
#       of the compiled step, bf16 v2 / cuBLAS bf16 / int8, with inductor's generated code kept.
# GPU1: float8 v2 against int8 v2, interleaved in one process (process-to-process drift was up to 4%).
set -u
W=$OUT/s7c; mkdir -p "$W"
export PYTHONUNBUFFERED=1 NCCL_NVLS_ENABLE=0
deadline=$(( $(date +%s) + ${BUDGET:-500} ))
left() { echo $(( deadline - $(date +%s) )); }
step() { echo "+ $*"; timeout "$(left)" "$@"; echo "exit $? at $(date +%T)"; }
echo '{"bfloat16": [8, 512, 2, 0, 2, 1]}' > "$W/bf16_v2.json"
echo '{"float8_e4m3fn": [8, 512, 2, 0, 2, 1]}' > "$W/f8v2.json"
echo '{"float8_e4m3fn": [8, 512, 2, 1, 2, 1]}' > "$W/f8v2_prefetch.json"
P="--layers 8 --kv_caches prefix --positions 200 --cache_size 208 --top 40 --steps 20"
(
  export CUDA_VISIBLE_DEVICES=0
  TORCHINDUCTOR_CACHE_DIR=$W/ind_bf16_v2 step python3 benchmarks/profile_decode_step.py --scheme none $P --gemv_configs "$W/bf16_v2.json"
  TORCHINDUCTOR_CACHE_DIR=$W/ind_bf16_cublas TORCHINDUCTOR_FX_GRAPH_CACHE=0 step python3 benchmarks/profile_decode_step.py --scheme linear $P
  TORCHINDUCTOR_CACHE_DIR=$W/ind_int8 TORCHINDUCTOR_FX_GRAPH_CACHE=0 step python3 benchmarks/profile_decode_step.py --scheme int8 $P
) > "$W/gpu0.log" 2>&1 &
(
  export CUDA_VISIBLE_DEVICES=1
  step python3 benchmarks/decode_roofline.py --gemv_configs "$W/f8v2.json" --runs int8wo:ours,float8wo:ours,int8wo:ours,float8wo:ours --repeats 3 --out "$W/roofline_f8v2"
  step python3 benchmarks/decode_roofline.py --gemv_configs "$W/f8v2_prefetch.json" --runs int8wo:ours,float8wo:ours,int8wo:ours,float8wo:ours --repeats 3 --out "$W/roofline_f8v2_prefetch"
) > "$W/gpu1.log" 2>&1 &
wait
grep -l "def triton_red_fused__to_copy_add_mean_mul_pow_rsqrt_view_0\|triton_red_fused__to_copy_add_mean_mul_pow_rsqrt_view_0 =" -r "$W"/ind_* 2>/dev/null | head > "$W/norm_kernel_files.txt"
tar czf "$OUT/s7c.tgz" -C "$OUT" s7c
echo "== gpu0"; sed -n '/compiled:/,/per linear/p' "$W/gpu0.log" | grep -v " 0.000 ms" | cut -c1-150
echo "== gpu1"; grep -E "^\| [a-z]|^exit|^\+" "$W/gpu1.log" | cut -c1-200 | tail -n 20
