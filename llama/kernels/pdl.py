"""Programmatic dependent launch (PDL) for our decode kernels (sm_90+).

In a CUDA-graph-replayed decode step each kernel starts only when the one before it has finished:
its launch, its programs' first loads and the tail of the kernel before (its last, part-empty wave)
are time in which little is read from memory, and a layer has about eight kernels. A kernel launched
with PDL (`launch_pdl=True`) may start once every program of the kernel before it has called
`gdc_launch_dependents` (or exited). Our GEMV and fused decode-step kernels take a PDL flag: each
program first issues the loads no earlier kernel writes (with PREFETCH, its first tile of weights,
constants of the graph), then `gdc_wait` (every earlier kernel complete, its writes visible), then
`gdc_launch_dependents`, then the rest. So the next layer's weights are in flight while the kernel
before finishes.

Why release only after the wait: then a kernel can start only once the one before it has passed its
own wait, so every kernel before that one is complete. A kernel reads the previous kernel's output
after its wait, and anything older at any time. Kernels launched without PDL (inductor's, torch's)
start after ours complete, as always. Inductor gives its own kernels PDL (triton.enable_pdl) where
every GEMV of the model launches with it (gemv.inductor_settings: bf16 by default); then its RMSNorm
kernel between two GEMVs is launched while the first runs and waits on the device, and releases the
second after its last load.

Which kernels launch with it: KERNELS, by name; by default the bf16 GEMVs and the fused decode step
(DEFAULT says why).
LLAMA_PDL in the environment names them (`LLAMA_PDL=int4,decode_step`, `all`, or `0`); `only()`
or `serial()` around a CUDA-graph capture changes it for that graph (benchmarks/decode_roofline.py's
ours-serial and ours-pdl-* paths measure the choices in one process).
"""
from __future__ import annotations

import contextlib
import os

import torch

try:
    import triton
    import triton.language as tl
except ImportError:
    triton = None

# The GEMV kernels by weight kind (llama.kernels.gemv's config keys) and the fused decode step.
GEMV_KINDS = ("bfloat16", "int8", "float8_e4m3fn", "int4")
ALL = frozenset(GEMV_KINDS + ("decode_step",))
# Those launched with PDL unless told otherwise: the bf16 GEMVs, which issue their first weight tile
# before the wait (their GEMV_CONFIGS entry's prefetch), and the fused decode step, so that the wo
# GEMV after it starts, and issues that tile, while attention runs (its programs take 8 of the SMs).
# bf16 ours with inductor's tuning off, one process on an H200 (twelfth session, call B): 247.5,
# 247.9 and 248.3 tok/s with the step on PDL against 245.5, 246.3 and 246.4 without; the kernel
# timeline showed the step beside a GEMV for 6.9 us a layer (launched during wqkv's last 1.5 us and
# waiting, then running beside wo) and alone for 1.3 us instead of 5.0. The step on PDL changes nothing for a GEMV launched without it (the other kinds'), which
# starts when the step has finished, as before. With the forward compiled whole, as
# benchmarks/decode_roofline.py's bf16 ours path does, bf16 decoded 0.8-4.6% faster with both than
# with neither in eight pairs on an H200 (eleventh session, calls C-E, docs/performance.md); with
# the blocks compiled apart they were level (call E: 235.7, 240.8, 233.5 against 236.9, 237.5,
# 243.0 tok/s). bf16 GEMVs run in that benchmark only (no registered technique keeps bf16 weights
# on our kernel). For the rest, none. Decode tok/s on an H200, Llama-3.1-8B (tenth
# session, docs/performance.md), with the int4 v2 loop rewritten for Triton 3.6 and its entry
# without PREFETCH. Call C, one process, two rounds, PDL for none / the GEMVs / the decode step /
# both: int4wo-128 457.2 and 467.0 / 442.0 and 444.8 / 462.1 and 458.5 / 449.1 and 460.0. Call B:
# none beat both at 8 of 10 int4 launch shapes. Call E, bf16: none 245.2 and 249.0, step 245.0 and
# 247.4, GEMVs 240.1, both 239.6. (With the old loop, ninth session, both had won for int4: 406.7
# against 383.1; likely through the GEMVs' prefetch, issued before the wait, which the entry no
# longer has.) int8wo and float8wo were as fast or faster without it in the ninth session: int8wo
# 366.2 none / 355.0 GEMVs, float8wo 374.1 none / 323.2 both.
DEFAULT = frozenset({"bfloat16", "decode_step"})


def _from_environment(value: str | None) -> set:
    """LLAMA_PDL: unset, DEFAULT; "0", none; "all", ALL; else kernel names, comma-separated."""
    if value is None:
        return set(DEFAULT)
    if value.strip() in ("0", ""):
        return set()
    if value.strip() == "all":
        return set(ALL)
    names = {name.strip() for name in value.split(",") if name.strip()}
    if names - ALL:
        raise ValueError(f"LLAMA_PDL={value!r} names unknown kernels {sorted(names - ALL)}; "
                         f"give 0, all, or some of: {', '.join(sorted(ALL))}")
    return names


KERNELS = _from_environment(os.environ.get("LLAMA_PDL"))


def launch_args(t: torch.Tensor, kernel: str) -> dict:
    """The launch keywords of PDL-capable `kernel` (a name in ALL) working on `t`: PDL (the kernel's
    constexpr) and Triton's launch_pdl, on where the GPU has PDL (sm_90+) and KERNELS names it."""
    if kernel not in ALL:
        raise ValueError(f"unknown PDL kernel {kernel!r}; known: {', '.join(sorted(ALL))}")
    on = kernel in KERNELS and t.is_cuda and torch.cuda.get_device_capability(t.device)[0] >= 9
    return {"PDL": True, "launch_pdl": True} if on else {"PDL": False}


@contextlib.contextmanager
def only(kernels):
    """Launch just `kernels` (names in ALL) with PDL inside this block; a CUDA graph captured in it
    keeps that."""
    global KERNELS
    unknown = set(kernels) - ALL
    if unknown:
        raise ValueError(f"unknown PDL kernels {sorted(unknown)}; known: {', '.join(sorted(ALL))}")
    before, KERNELS = KERNELS, set(kernels)
    try:
        yield
    finally:
        KERNELS = before


def serial():
    """Launch all our kernels without PDL inside this block."""
    return only(())


if triton is not None:

    @triton.jit
    def wait_then_release(PDL: tl.constexpr):
        # Every earlier kernel complete and its writes visible; then let the next kernel start.
        if PDL:
            tl.extra.cuda.gdc_wait()
            tl.extra.cuda.gdc_launch_dependents()
