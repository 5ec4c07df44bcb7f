"""Instructions per weight byte in the main loop of the Triton GEMV kernels, from their sm_90 SASS.

Compiles the kernels of llama/kernels/gemv.py for an H100/H200 (sm_90) on any machine, GPU or not
(Triton ships ptxas and nvdisasm), and prints, for the largest basic block (the K loop), its
instruction count per weight byte each thread handles per iteration, the opcode mix, and the
barriers and shared-memory ops in it (a layout conversion of x inside the loop shows as BAR/LDS).
Counts depend on the Triton version, and a lot: the lent H200 runs Triton 3.6, whose code for the
int4 v2 loop had 8.9 instructions per byte where 3.9's had 6.2, until the kernel was written so both
lay the tile out alike (docs/performance.md). To count what the device runs, put that version first
on the path (only triton itself; torch stays). --int4 adds int4 v2 launch shapes to count
(BLOCK_N,BLOCK_K,num_warps,prefetch; group 128, with the norm prologue and without):

    python benchmarks/gemv_sass.py
    pip install --target /tmp/triton36 triton==3.6.0 && PYTHONPATH=/tmp/triton36 python benchmarks/gemv_sass.py
    python benchmarks/gemv_sass.py --int4 64,512,2,1 16,512,1,0
"""
from __future__ import annotations

import argparse
import collections
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from llama.kernels import gemv  # noqa: E402

TOOLS = Path(triton.__file__).parent / "backends" / "nvidia" / "bin"
ROWWISE = {"x_ptr": "*bf16", "w_ptr": "*i8", "scale_ptr": "*fp32", "y_ptr": "*bf16", "N": "i32", "K": "i32"}
INT8_V2 = {"x_ptr": "*bf16", "w_ptr": "*i32", "scale_ptr": "*fp32", "y_ptr": "*bf16", "N": "i32", "K": "i32",
           "words_per_row": "i32", "norm_ptr": "*bf16", "eps": "fp32"}
INT4_V2 = {"x_ptr": "*bf16", "w_ptr": "*i32", "scale_ptr": "*bf16", "zero_ptr": "*bf16", "y_ptr": "*bf16",
           "N": "i32", "K": "i32", "words_per_row": "i32", "norm_ptr": "*bf16", "eps": "fp32"}


def compile_sm90(fn, signature: dict, constexprs: dict, num_warps: int):
    # Pointers and sizes divisible by 16, as the launches on real shapes specialize them; PDL off (by
    # default only the bf16 GEMVs launch with it, llama/kernels/pdl.py; it adds instructions only
    # before the loop, so the loop counts are the same either way).
    constexprs = {"PDL": False, **constexprs}
    divisible = [(i,) for i, (name, ty) in enumerate(signature.items()) if ty.startswith("*") or name in ("K", "words_per_row")]
    sig = dict(signature, **{name: "constexpr" for name in constexprs})
    src = ASTSource(fn=fn, signature=sig, constexprs=constexprs, attrs={i: [["tt.divisibility", 16]] for i in divisible})
    return triton.compile(src, target=GPUTarget("cuda", 90, 32), options={"num_warps": num_warps})


def loop_report(label: str, kernel, weight_bytes_per_thread: float) -> str:
    with tempfile.NamedTemporaryFile(suffix=".cubin", delete=False) as f:
        f.write(kernel.asm["cubin"])
    try:
        sass = subprocess.run([str(TOOLS / "nvdisasm"), "-c", f.name], capture_output=True, text=True, check=True).stdout
        usage = subprocess.run([str(TOOLS / "cuobjdump"), "--dump-resource-usage", f.name], capture_output=True, text=True).stdout
    finally:
        os.unlink(f.name)
    block = max(re.split(r"\n(?=\.L_x_\d+:)", sass), key=lambda b: len(b.splitlines()))
    ops = collections.Counter(op.split(".")[0] for op in re.findall(r"/\*[0-9a-f]{4}\*/\s+(?:@!?U?P\w+\s+)?([A-Z0-9_.]+)", block))
    n = sum(ops.values())
    regs = re.search(r"REG:(\d+)", usage)
    return (f"{label:34s} {n:4d} instr in the loop, {n / weight_bytes_per_thread:5.2f} per weight byte per thread; "
            f"BAR {ops['BAR']} LDS {ops['LDS']}; regs {regs.group(1) if regs else '?'}\n"
            f"{'':34s} {dict(ops.most_common(8))}")


def main(int4_shapes: list[tuple[int, int, int, int]]) -> None:
    print(f"triton {triton.__version__}, sm_90")
    for block_n, block_k, warps, prefetch in [(8, 512, 4, 1), (8, 512, 2, 0), (16, 1024, 8, 1)]:
        consts = dict(BLOCK_N=block_n, BLOCK_K=block_k, PREFETCH=prefetch, SWIGLU=False)
        per_thread = block_n * block_k / (32 * warps)  # int8: one byte per weight
        for weight, ptr in (("int8", "*i8"), ("float8", "*fp8e4nv")):  # the rowwise kernel
            v1 = compile_sm90(gemv._rowwise_gemv_kernel, dict(ROWWISE, w_ptr=ptr),
                              dict(consts, HAS_SCALE=True, IS_INT8=weight == "int8", SPLIT=False), warps)
            print(loop_report(f"{weight} v1 {(block_n, block_k, warps, prefetch)}", v1, per_thread))
        for weight in ("int8", "float8", "bf16"):  # the word kernel; bf16 weights are 2 bytes each
            v2 = compile_sm90(gemv._words_gemv_kernel, INT8_V2, dict(consts, WEIGHT=weight, ASM=weight == "float8",
                                                                     NORM=0), warps)
            print(loop_report(f"{weight} v2 {(block_n, block_k, warps, prefetch)}", v2,
                              per_thread * (2 if weight == "bf16" else 1)))
    # RMSNorm in the prologue (NORM, the linears after a norm: wqkv, w13, the head): what normalizing
    # each x tile adds to the loop, at each weight's GEMV_CONFIGS entry.
    for weight, kind in (("int8", "int8"), ("float8", "float8_e4m3fn"), ("bf16", "bfloat16")):
        c = gemv.gemv_config(kind)
        block_n, block_k, warps, prefetch = c.block_n, c.block_k, c.num_warps, c.prefetch
        v2 = compile_sm90(gemv._words_gemv_kernel, INT8_V2, dict(BLOCK_N=block_n, BLOCK_K=block_k, PREFETCH=prefetch,
                                                                 SWIGLU=False, WEIGHT=weight, ASM=weight == "float8",
                                                                 NORM=gemv.NORM_TILE), warps)
        print(loop_report(f"{weight} v2 norm {(block_n, block_k, warps, prefetch)}", v2,
                          block_n * block_k / (32 * warps) * (2 if weight == "bf16" else 1)))
    c = gemv.gemv_config("int4")
    for block_n, block_k, warps, prefetch in [(c.block_n, c.block_k, c.num_warps, c.prefetch)] + int4_shapes:
        for norm in (False, True):
            v2 = compile_sm90(gemv._int4_gemv_v2_kernel, INT4_V2, dict(GROUP=128, BLOCK_N=block_n, BLOCK_K=block_k,
                                                                       PREFETCH=prefetch, SWIGLU=False,
                                                                       NORM=gemv.NORM_TILE if norm else 0), warps)
            print(loop_report(f"int4 v2 g128{' norm' if norm else ''} {(block_n, block_k, warps, prefetch)}", v2,
                              block_n * block_k / 2 / (32 * warps)))


def int4_shape(text: str) -> tuple[int, int, int, int]:
    fields = tuple(int(f) for f in text.split(","))
    if len(fields) != 4:
        raise argparse.ArgumentTypeError(f"{text!r}: give BLOCK_N,BLOCK_K,num_warps,prefetch")
    return fields


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--int4", type=int4_shape, nargs="*", default=[], metavar="BN,BK,W,PF",
                        help="int4 v2 launch shapes to count besides the GEMV_CONFIGS entry")
    main(parser.parse_args().int4)
