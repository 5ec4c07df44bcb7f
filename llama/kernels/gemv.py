"""Weight-only quantized linears with Triton GEMV kernels for batch-1 decode.

Batch-1 decode is memory bound: each step reads every weight once. These linears store weights as
int8 or float8_e4m3 with one scale per output row, or as int4 (two per byte) with a scale and a zero
per group of `group_size` inputs, and on CUDA compute y = x @ W.T for a few rows of x with one
Triton kernel that dequantizes in registers, so each weight byte crosses the memory bus once.

Everything else (CPU, prefill with many rows, no Triton) runs plain torch on the dequantized
weight: the same function, so CI and the default CPU run are unaffected.
Registered as int8wo-triton, int4wo-triton-<group> and float8wo-triton in llama/techniques.py;
benchmarks/decode_roofline.py measures them against torchao (docs/performance.md).

Layouts (N outputs, K inputs):
- rowwise: `qweight` (N, K) int8 or float8_e4m3fn, `scale` (N,) float32; w = q * scale (or bf16
  weights as they are, no scale). A second kernel (v2, _words_gemv_kernel) reads the same bytes as
  int32 words, as int4's v2 does.
- int4: `qweight` (N, K // 2) uint8, input 2j in the low nibble and 2j + 1 in the high one;
  `scale` and `zero` (N, K // group_size) in the model dtype; w = q * scale + zero, q in 0..15.
  Two kernels read it: v1 unpacks bytes; v2 reads the same bytes as int32 words (little-endian, so
  word j holds inputs 8j..8j+7, input 8j + i in bits 4i..4i+3) and spends fewer instructions per byte.
- a FeedForward's w13 (either kind, swiglu=True): rows reordered in groups of 4 gate and 4 up rows
  (SWIGLU_ROWS), and the kernels' epilogue writes silu(gate) * up instead of the 2I rows.
- the RMSNorm before wqkv, w13 and the output head (fuse_norms=True): its weight a buffer of the
  linear (`norm_weight`), the norm module an nn.Identity, and the kernels' prologue (NORM) normalizes
  x as the RMSNorm kernel did: one reduction kernel fewer per norm (RMSNORM IN THE GEMV below).

Split-K (GEMV_CONFIGS' sixth field, s): matrices with few rows split K across programs that write fp32
partial sums, then added up with one torch sum (fused into the next kernel under torch.compile;
deterministic, no atomics); they split while the programs stay within s x MIN_PROGRAMS.

On sm_90+ the kernels can be launched with programmatic dependent launch (llama/kernels/pdl.py): by
default the bf16 ones, which then load their first weight tile while the kernel before (the fused
decode step, also on PDL, among them) finishes.
"""
from __future__ import annotations

import json
from typing import Callable, NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from llama.kernels import pdl
from llama.model import RMSNorm, rms_norm

try:
    import triton
    import triton.language as tl
except ImportError:  # CPU-only installs: the torch fallback below is the whole story
    triton = None

# Above this many rows of x, one matmul on the dequantized weight beats re-reading W per row.
MAX_GEMV_ROWS = 4


def _is_power_of_two(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


def triton_gemv_available(x: Tensor) -> bool:
    return triton is not None and x.is_cuda and x.numel() // x.shape[-1] <= MAX_GEMV_ROWS


# ----------------------------------------------------------------------------- quantization

def quantize_rowwise(weight: Tensor, dtype: torch.dtype = torch.int8) -> tuple[Tensor, Tensor]:
    """Symmetric per-output-row quantization to int8 or float8_e4m3fn -> (qweight, scale)."""
    w = weight.float()
    qmax = 127.0 if dtype == torch.int8 else torch.finfo(dtype).max
    scale = w.abs().amax(dim=1).clamp(min=1e-12) / qmax
    q = w / scale[:, None]
    q = q.round().clamp(-127, 127) if dtype == torch.int8 else q.clamp(-qmax, qmax)
    return q.to(dtype), scale


def quantize_int4(weight: Tensor, group_size: int) -> tuple[Tensor, Tensor, Tensor]:
    """Asymmetric (min/max) int4 per group of inputs -> (packed uint8, scale, zero)."""
    n, k = weight.shape
    if k % group_size or group_size % 2:
        raise ValueError(f"int4 group_size {group_size} must be even and divide in_features {k}")
    w = weight.float().view(n, k // group_size, group_size)
    lo, hi = w.amin(dim=-1, keepdim=True), w.amax(dim=-1, keepdim=True)
    # Scale and zero are stored in the model dtype; quantize against the stored values so the
    # dequantized reference is exactly what the kernel computes with.
    scale = ((hi - lo) / 15).clamp(min=1e-8).to(weight.dtype).float()
    zero = lo.to(weight.dtype).float()
    q = ((w - zero) / scale).round().clamp(0, 15).to(torch.uint8).view(n, k)
    packed = q[:, 0::2] | (q[:, 1::2] << 4)
    return packed, scale.squeeze(-1).to(weight.dtype), zero.squeeze(-1).to(weight.dtype)


# Rows dequantized at a time. Dequantizing goes through float32, and the whole 128256 x 4096 output
# projection at once would hold ~4 GB of float32 temporaries on top of its 1 GB result: a transient
# that every prefill with more than MAX_GEMV_ROWS tokens adds to the measured peak memory.
DEQUANT_ROWS = 4096


def _by_rows(n: int, k: int, dtype: torch.dtype, device: torch.device, rows_fn: Callable[[slice], Tensor]) -> Tensor:
    out = torch.empty(n, k, dtype=dtype, device=device)
    for start in range(0, n, DEQUANT_ROWS):
        rows = slice(start, min(start + DEQUANT_ROWS, n))
        out[rows] = rows_fn(rows)
    return out


def dequantize_rowwise(qweight: Tensor, scale: Tensor, dtype: torch.dtype) -> Tensor:
    n, k = qweight.shape
    return _by_rows(n, k, dtype, qweight.device, lambda r: (qweight[r].float() * scale[r, None]).to(dtype))


def dequantize_int4(packed: Tensor, scale: Tensor, zero: Tensor) -> Tensor:
    n, k = packed.shape[0], 2 * packed.shape[1]
    group_size = k // scale.shape[1]

    def rows_fn(r: slice) -> Tensor:
        p = packed[r]
        q = torch.stack([p & 0xF, p >> 4], dim=-1).view(p.shape[0], -1).float()
        w = q.view(p.shape[0], -1, group_size) * scale[r].float()[..., None] + zero[r].float()[..., None]
        return w.view(p.shape[0], -1)

    return _by_rows(n, k, scale.dtype, packed.device, rows_fn)


# ----------------------------------------------------------------------------- SwiGLU in the w13 GEMV
# FeedForward computes silu(gate) * up from w13's 2I outputs (gate rows 0..I-1, then up rows
# I..2I-1): on the GPU a pointwise kernel after the GEMV in every layer. quantize_linears stores a
# FeedForward's w13 with its rows reordered in groups of SWIGLU_ROWS, 4 gate rows then the 4 up
# rows they pair with, so a GEMV program whose block of rows is a multiple of 8 holds whole pairs
# and its epilogue writes silu(gate) * up itself (_store_swiglu): one launch per layer fewer.
# Weights are quantized per row (int4: per row's groups), so quantizing the reordered weight is the
# same as reordering the quantized one.
SWIGLU_ROWS = 8


def swiglu_row_order(n: int) -> Tensor:
    """Stored row r of a fused w13 of n = 2I rows is its original row swiglu_row_order(n)[r]."""
    if n % SWIGLU_ROWS:
        raise ValueError(f"SwiGLU fusion needs 2 * intermediate_size a multiple of {SWIGLU_ROWS}, not {n}")
    gate = torch.arange(n // 2).view(-1, SWIGLU_ROWS // 2)
    return torch.cat([gate, gate + n // 2], dim=1).flatten()


def swiglu_from_rows(y: Tensor) -> Tensor:
    """silu(gate) * up (..., I) from outputs (..., 2I) in the stored row order: the kernels' epilogue
    in torch (CPU, prefill, launch shapes the epilogue can't take). The outputs go back to their
    original order first and then FeedForward's own ops run on the same layout: bit for bit the
    unfused result (torch's CPU silu rounds vectorized and tail elements differently, so on gate
    and up gathered into another layout the last bit of float32 could differ)."""
    y = y.unflatten(-1, (-1, 2, SWIGLU_ROWS // 2)).transpose(-3, -2).flatten(-3)
    gate, up = y.chunk(2, dim=-1)
    return F.silu(gate) * up


def _swiglu_rows(weight: Tensor) -> Tensor:
    return weight[swiglu_row_order(weight.shape[0]).to(weight.device)]


def _original_rows(weight: Tensor) -> Tensor:
    return weight[swiglu_row_order(weight.shape[0]).argsort().to(weight.device)]


# ----------------------------------------------------------------------------- RMSNorm in the GEMV
# Each TransformerBlock normalizes x (RMSNorm) before wqkv and before w13, and the Transformer before
# the output head: on the GPU a reduction kernel each, whose output only that GEMV reads. Modules
# name these pairs in `norm_into` (TransformerBlock, Transformer); quantize_linears gives the linear
# the norm's weight and eps and replaces the norm by nn.Identity, so the block's forward passes x
# as it is. The word kernel and int4 v2 then normalize x in their prologue (NORM: each program sums
# x^2 over the whole row, then normalizes each x tile as it loads it, _rms_normed); where another
# kernel runs, the op normalizes x in torch first (normed_input), and the modules' torch path
# (CPU, prefill) runs llama.model.rms_norm itself, so the logits there are the unfused model's bits.

def normed_input(x: Tensor, norm_weight: Tensor, eps: float) -> Tensor:
    """x as the NORM kernels normalize it: llama.model.rms_norm, in x's dtype."""
    return rms_norm(x, norm_weight, eps).to(x.dtype)


# ----------------------------------------------------------------------------- kernels
# Launch shapes (BLOCK_N, BLOCK_K, num_warps) per weight kind, then the optional fields below (one
# reader: gemv_config): the fastest over all linears of one Llama-3.1-8B decode token on an H200
# (`python benchmarks/gemv_sweep.py`, docs/performance.md).
# BLOCK_K counts inputs. Matrices with fewer than MIN_PROGRAMS blocks of rows get narrower blocks.
# int4 has a fourth field, the kernel: 1 (_int4_gemv_kernel) or 2 (_int4_gemv_v2_kernel); a config
# of three fields takes the kernel from here. The sweep picked int4 with groups of 128 (with groups
# of 64 this shape measured 7% slower than v1's best).
# No num_stages: Triton 3.9 software-pipelines loads that feed tl.dot only, so for these loops every
# num_stages compiles to the same PTX (checked for sm_90 on the rowwise and both int4 kernels).
# An optional last field, prefetch (0 or 1; rowwise the fourth field, int4 the fifth), does that
# pipelining by hand: each program issues the load of its next K tile before it computes the current
# one, so two tiles per program are in flight instead of one. The same math either way. Missing
# means 0; an int4 config of three fields takes kernel, prefetch and split from here; v1 ignores them.
# On the H200 prefetch made all linears of a token 7% faster for int8 (56% -> 60% of the copy
# bandwidth) and for int4 with groups of 128 (38% -> 41%); bf16 and float8 were not swept with it then.
# int4 dropped it again with the v2 loop rewritten for Triton 3.6 (tenth H200 session, decode tok/s,
# one process each, no PDL): (32, 512, 2) without prefetch 470.3 and 457.1, with it 439.6; of nine
# launch shapes without it, the next best were (32, 512, 4) 463.9 and (32, 1024, 4) 463.6.
# int8, float8 and bf16 have a fifth field, the kernel: 1 (_rowwise_gemv_kernel, the default) or 2
# (_words_gemv_kernel: int32 words; for int8 half the instructions per byte in sm_90 code). On the
# H200 int8 v2 took all linears of a token from 3.00 to 2.42 ms (60% -> 74% of the copy bandwidth).
# The rowwise kernels and int4 v2 take a sixth field, split-K (0 or 1): matrices with fewer than
# MIN_PROGRAMS blocks of rows keep BLOCK_N and split K over up to MAX_SPLITS programs instead
# (_k_splits), which add up their fp32 partial sums afterwards. On the H200, decoding with it, one
# GPU, processes one after another: int8wo 324.3 -> 329.9 tok/s, int4wo-128 330.7 -> 332.4.
# float8 and bf16 on the word kernel, with int8's entry, by decode time on the H200 (seventh
# session, docs/performance.md): float8wo 317.1 -> 354.2 tok/s (int8wo 348.5 in the same
# process); bf16 238.4, 86% of the copy bandwidth (bf16 plain 214.2 in the same process). Other
# entries decoded slower, the GEMV sweep's picks included.
# Trying another entry: edit it here or pass it as --gemv_configs (apply_configs). The modules pass
# their entry into the op, so it is part of the compiled graph and of inductor's cache key (read
# inside the op, a graph compiled with an old entry was reused: sixth H200 session).
# bf16 took its prefetch back with PDL for its GEMVs (pdl.DEFAULT) and the forward compiled whole
# (benchmarks/decode_roofline.py's WHOLE_FORWARD): the three together decoded 0.8-4.6% faster than
# without them in eight pairs on an H200 (eleventh session, calls C-E), each alone level.
GEMV_CONFIGS = {"bfloat16": (8, 512, 2, 1, 2, 1), "int8": (8, 512, 2, 0, 2, 1), "float8_e4m3fn": (8, 512, 2, 0, 2, 1),
                "int4": (32, 512, 2, 2, 0, 1)}
MIN_PROGRAMS = 1024
# The weights kernel 2 (_words_gemv_kernel) reads: its WEIGHT, and inputs per int32 word.
WORD_KERNEL_WEIGHTS = {torch.int8: ("int8", 4), torch.float8_e4m3fn: ("float8", 4), torch.bfloat16: ("bf16", 2)}
MAX_SPLITS = 8
# RMSNorm in the prologue (NORM): the widest tile of the x^2 pre-pass, loads issued together. 2048:
# in sm_90 code at the decode configs no more registers than narrower tiles (4096: int8 and float8 72
# -> 94 registers, fewer programs per SM); Llama-3.1-8B's dim of 4096 takes two.
NORM_TILE = 2048
# Where the norm goes into the GEMV unless quantize_linears is told otherwise. One A/B pair on an H200
# (Llama-3.1-8B, calls A and B of the eighth session, docs/performance.md; B also had the two-stage
# argmax): int4wo-128 357.3 -> 378.5 tok/s (388 in two later processes), int8wo 354.4 -> 356.3,
# float8wo 377.1 -> 357.3, bf16 243.4 -> 231.0. The word kernel's short programs (8 rows) wait on the
# x^2 pre-pass before their first weight load; int4 v2's (32 rows, instruction-bound) hide it.
# Process-to-process drift that session was large (bf16 ours 219-246 with the norms apart), so
# only int4's gain stands out of it.
FUSE_NORMS_BY_DEFAULT = {"int4"}


# Weight kinds whose compiled decode keeps inductor's timing-based tuning of its own kernels
# (coordinate_descent_tuning, torchao's recommended setting). With our GEMVs doing every matmul,
# inductor writes only the small kernels between them (RMSNorm, split-K sums, residual adds, argmax),
# and tuning those by timing made each process keep other picks: on an H200 (twelfth session, calls A
# and B, docs/performance.md) bf16 ours ran its w2 sum + RMSNorm kernel in 5.9-8.5 us against 2.6 us
# untuned and decoded at 229.5-247.1 tok/s against 245.5-249.3; untuned int8wo 379.0/379.9 against
# 342.8/361.1, float8wo 389.8/390.6 against 352.0/360.7. int4wo-128 (its norms in the GEMVs) was
# the exception: 470.8/470.8 untuned against 475.4/476.0.
TUNED_GLUE_KINDS = {"int4"}


# Inductor's own kernels launch with PDL too (its triton.enable_pdl) where every GEMV of the blocks
# does (pdl.KERNELS: by default the bf16 ones). Then the RMSNorm kernel after a GEMV is launched
# while the GEMV runs and waits on the device (no launch gap), and the GEMV after the norm, on PDL
# itself, starts as the norm finishes. bf16 ours, one process per call on an H200 (thirteenth
# session, docs/performance.md), tok/s with it against without: call A 250.9, 250.7, 250.7 against
# 247.3, 248.0, 248.1; B 250.5, 251.4, 251.3 against 246.9, 247.5, 247.6; C-F, four processes
# with it the default, 253.1-254.2 against 249.9-251.0. For the kinds whose GEMVs launch without
# PDL it changed little or lost (call B): int8wo 376.6/376.5 against 375.5/376.2, float8wo
# 388.5/386.5 against 388.2/386.4, int4wo-128 455.6/454.2 against 465.4/472.1.


def inductor_settings(model: nn.Module) -> dict:
    """The inductor settings to compile `model`'s decode with, over llama.generate.INDUCTOR_CONFIG,
    where every linear in its blocks is one of our GEMVs: timing-based tuning off unless one is of
    a kind in TUNED_GLUE_KINDS, and inductor's kernels on PDL if all of them launch with PDL
    (pdl.KERNELS) (why: above). Else none: torchao's configs and nn.Linear keep inductor's
    defaults, as inductor writes their matmuls."""
    layers = getattr(model, "layers", model)
    kinds = {"int4" if isinstance(m, Int4Linear) else _config_key(m.qweight.dtype)
             for m in layers.modules() if isinstance(m, _GemvLinear)}
    if not kinds or any(type(m) is nn.Linear for m in layers.modules()):
        return {}
    settings = {} if kinds & TUNED_GLUE_KINDS else {"coordinate_descent_tuning": False}
    if kinds <= pdl.KERNELS:
        settings["triton.enable_pdl"] = True
    return settings


class GemvConfig(NamedTuple):
    block_n: int
    block_k: int
    num_warps: int
    kernel: int
    prefetch: int
    split: int


def gemv_config(kind: str, config=None) -> GemvConfig:
    """A GEMV_CONFIGS entry (config None) or a config given to a call, every field named. The order
    of fields: rowwise (BLOCK_N, BLOCK_K, num_warps, prefetch, kernel, split), int4 (BLOCK_N,
    BLOCK_K, num_warps, kernel, prefetch, split). Left out: prefetch and split 0, rowwise kernel 1;
    an int4 config of three fields takes kernel, prefetch and split from GEMV_CONFIGS["int4"]."""
    fields = tuple(GEMV_CONFIGS[kind] if config is None else config)
    if kind == "int4":
        rest = fields[3:] if len(fields) > 3 else tuple(GEMV_CONFIGS["int4"][3:])
        kernel, prefetch, split = (rest + (0, 0))[:3]
    else:
        prefetch, kernel, split = (fields[3:] + (0, 1, 0)[len(fields[3:]):])[:3]
    return GemvConfig(*fields[:3], kernel, int(bool(prefetch)), int(split))


def config_entry(kind: str, c: GemvConfig) -> tuple[int, ...]:
    """gemv_config's inverse: `c` as a GEMV_CONFIGS entry of `kind`, every field in that kind's order."""
    order = (c.kernel, c.prefetch) if kind == "int4" else (c.prefetch, c.kernel)
    return (c.block_n, c.block_k, c.num_warps, *order, c.split)


def apply_configs(path: str) -> dict:
    """Replace GEMV_CONFIGS entries with those of a JSON object {kind: config} (gemv_sweep.py writes
    OUT/gemv_configs.json), and turn off inductor's on-disk graph caches for this process; returns
    the entries now in effect. ValueError says what is wrong with the file."""
    try:
        picked = {kind: tuple(int(v) for v in config) for kind, config in json.load(open(path)).items()}
    except (OSError, ValueError, AttributeError, TypeError) as e:
        raise ValueError(f"{path}: not a JSON object of GEMV_CONFIGS entries ({e})") from None
    unknown = set(picked) - set(GEMV_CONFIGS)
    if unknown:
        raise ValueError(f"{path}: unknown weight kinds {sorted(unknown)}; known: {', '.join(GEMV_CONFIGS)}")
    if any(len(config) < 3 for config in picked.values()):
        raise ValueError(f"{path}: each entry needs at least (BLOCK_N, BLOCK_K, num_warps)")
    GEMV_CONFIGS.update(picked)
    # A config comparison compiles afresh, never from inductor's on-disk caches. (When the ops read
    # their entry while torch.compile traced them, a later process with other entries was handed
    # the graph compiled with the first ones: sixth H200 session. The modules now pass the entry
    # in, so it keys the cache; this stays as the guard for A/B runs.)
    import torch._functorch.config
    import torch._inductor.config
    torch._inductor.config.fx_graph_cache = False
    torch._functorch.config.enable_autograd_cache = False
    return dict(GEMV_CONFIGS)


def _config_key(weight_dtype: torch.dtype) -> str:
    return "int4" if weight_dtype == torch.uint8 else str(weight_dtype).removeprefix("torch.")


if triton is not None:

    @triton.jit
    def _exact_float(i):
        # int32 i in [0, 2**23) -> float32, exactly: as float bits, 2**23 + i, then minus 2**23.
        # Integer ops and one add at full rate, where a plain int->float convert runs at a quarter
        # rate on Hopper and capped int4 decode at about half the copy bandwidth.
        return (i | 0x4B000000).to(tl.float32, bitcast=True) - 8388608.0

    @triton.jit
    def _rowwise_load(x_ptr, w_ptr, m, rn, n_ok, rk, k0, K, k_end):
        # The x and weight tiles at k0; both all masked off once k0 >= k_end, the end of this
        # program's part of the row (no bytes read).
        k_ok = k0 + rk < k_end
        x = tl.load(x_ptr + m * K + k0 + rk, mask=k_ok, other=0.0).to(tl.float32)
        w = tl.load(w_ptr + rn[:, None] * K + (k0 + rk)[None, :], mask=n_ok[:, None] & k_ok[None, :],
                    other=0.0, eviction_policy="evict_first")
        return x, w

    @triton.jit
    def _rowwise_gemv_kernel(x_ptr, w_ptr, scale_ptr, y_ptr, N, K,
                             HAS_SCALE: tl.constexpr, IS_INT8: tl.constexpr,
                             BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, PREFETCH: tl.constexpr,
                             SPLIT: tl.constexpr, SWIGLU: tl.constexpr, PDL: tl.constexpr):
        # Grid (rows of x, blocks of N, splits of K): rows sharing a weight tile run next to each
        # other, so a second row finds the tile in L2. PDL: every load here reads x too, so the wait
        # comes first (llama/kernels/pdl.py).
        pdl.wait_then_release(PDL)
        m = tl.program_id(0)
        rn = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
        rk = tl.arange(0, BLOCK_K)
        n_ok = rn < N
        k_start, k_end = _split_range(K, BLOCK_K, SPLIT)
        acc = tl.zeros((BLOCK_N, BLOCK_K), dtype=tl.float32)
        if PREFETCH:  # tile 0 before the loop; the loop carries the tile it is about to compute
            x, w = _rowwise_load(x_ptr, w_ptr, m, rn, n_ok, rk, k_start, K, k_end)
        for k0 in range(k_start, k_end, BLOCK_K):
            if PREFETCH:
                # Issue the next tile's loads first, so they are in flight while this tile is
                # converted and summed (Triton pipelines tl.dot operands only). Past the split's end
                # all masked off.
                x_next, w_next = _rowwise_load(x_ptr, w_ptr, m, rn, n_ok, rk, k0 + BLOCK_K, K, k_end)
            else:
                x, w = _rowwise_load(x_ptr, w_ptr, m, rn, n_ok, rk, k0, K, k_end)
            if IS_INT8:  # a new name: w itself is carried to the next iteration with its load type
                wf = _exact_float(w.to(tl.int32) + 128) - 128.0
            else:
                wf = w.to(tl.float32)
            acc += wf * x[None, :]
            if PREFETCH:
                x, w = x_next, w_next
        y = tl.sum(acc, axis=1)
        if HAS_SCALE:
            y = y * tl.load(scale_ptr + rn, mask=n_ok, other=0.0)
        _store_rows(y_ptr, y, m, rn, N, BLOCK_N, SWIGLU)

    @triton.jit
    def _split4(t):
        # (..., 4) -> its four (...) slices in order; the last dim lies in one thread's registers,
        # so this only renames registers.
        even, odd = tl.split(tl.reshape(t, t.shape[:-1] + [2, 2]))
        t0, t2 = tl.split(even)
        t1, t3 = tl.split(odd)
        return t0, t1, t2, t3

    @triton.jit
    def _split_range(length, TILE: tl.constexpr, SPLIT: tl.constexpr = True):
        # Split-K: program (m, n, s) of a grid with S splits sums elements [s, s + 1) * length / S
        # of its rows, a whole number of tiles (the host checks); S = 1 is the whole row. The
        # multiple_of hints keep the loads 16 bytes wide: without them Triton can't tell the tiles
        # stay aligned, and the int8 loop grew from 250 to 279 sm_90 instructions (gemv_sass.py).
        # SPLIT=False: (0, length), for rows that need not be whole tiles (the rowwise kernel).
        if not SPLIT:
            return 0, length
        per_split = tl.multiple_of(length // tl.num_programs(2), TILE)
        start = tl.multiple_of(tl.program_id(2) * per_split, TILE)
        return start, start + per_split

    @triton.jit
    def _store_split(y_ptr, y, m, rn, N):
        # Row m of split s goes to y[s, m]: with S = 1 that is y (rows, N) in x's dtype; with S > 1 an
        # fp32 (S, rows, N) buffer of partial sums the host adds up (_reduce_splits).
        row = tl.program_id(2) * tl.num_programs(0) + m
        tl.store(y_ptr + row * N + rn, y.to(y_ptr.dtype.element_ty), mask=rn < N)

    @triton.jit
    def _store_swiglu(y_ptr, y, m, N, BLOCK_N: tl.constexpr):
        # A fused w13 (SWIGLU_ROWS): this program's BLOCK_N final row sums are BLOCK_N // 8 groups of
        # 4 gate rows then their 4 up rows; writes silu(gate) * up, BLOCK_N // 2 outputs of y (rows,
        # N // 2). Gate and up are rounded to the output dtype first, as the unfused w13's output is;
        # then silu(g) * u in float32, rounded once, as torch.compile's pointwise kernel computes it
        # (on an H200, compiled FeedForward fused and unfused gave the same bits at Llama-3.1-8B's
        # shapes for all four schemes); eager torch also rounds silu(g): at most an ulp apart.
        y = y.to(y_ptr.dtype.element_ty).to(tl.float32)
        gate, up = tl.split(tl.permute(tl.reshape(y, (BLOCK_N // 8, 2, 4)), (0, 2, 1)))
        h = tl.reshape(gate * tl.sigmoid(gate) * up, (BLOCK_N // 2,))
        rh = tl.program_id(1) * (BLOCK_N // 2) + tl.arange(0, BLOCK_N // 2)
        tl.store(y_ptr + m * (N // 2) + rh, h.to(y_ptr.dtype.element_ty), mask=rh < N // 2)

    @triton.jit
    def _store_rows(y_ptr, y, m, rn, N, BLOCK_N: tl.constexpr, SWIGLU: tl.constexpr):
        # The kernels' epilogue: row sums y as they are (_store_split), or SWIGLU, silu(gate) * up of
        # them (_store_swiglu; the host launches it with BLOCK_N a multiple of 8 and no split-K).
        if SWIGLU:
            _store_swiglu(y_ptr, y, m, N, BLOCK_N)
        else:
            _store_split(y_ptr, y, m, rn, N)

    @triton.jit
    def _norm_rsqrt(x_ptr, m, K, eps, BLOCK: tl.constexpr):
        # RMSNorm in the prologue (NORM): r = rsqrt(mean(x^2) + eps) of row m in float32, over the
        # whole row, also under split-K, where the program then sums only its part (x is K elements,
        # L2-resident: every program rereads it). BLOCK (a power of two, NORM_TILE at most) wide: for
        # K up to NORM_TILE all loads issued at once, one L2 round trip before the loop, not one per
        # BLOCK_K tile.
        sq = tl.zeros((BLOCK,), dtype=tl.float32)
        for k0 in range(0, K, BLOCK):
            k = k0 + tl.arange(0, BLOCK)
            xk = tl.load(x_ptr + m * K + k, mask=k < K, other=0.0).to(tl.float32)
            sq += xk * xk
        return tl.rsqrt(tl.sum(sq, axis=0) / K + eps)

    @triton.jit
    def _rms_normed(x, g, r, x_ptr):
        # A tile of x (float32) normalized as llama.model.rms_norm does it: x * r rounded to x's
        # dtype, times the norm weight g, rounded again (bf16 * bf16 in torch): both roundings, so
        # the GEMV sees the bits the separate RMSNorm kernel would have written.
        dt = x_ptr.dtype.element_ty
        return ((x * r).to(dt).to(tl.float32) * g.to(tl.float32)).to(dt).to(tl.float32)

    @triton.jit
    def _words_load(w_ptr, rn_load, words_per_row, word, w0, w_end, MASKED: tl.constexpr):
        # The weight words of the tile at word w0; MASKED: w0 may be at or past w_end, the end of this
        # program's slice of the row (all masked off then, and never used). Tiles never straddle the
        # end (BLOCK_K divides the slice), so the mask is one value splatted to the tile (Triton's
        # CPU interpreter takes no scalar mask): a per-element mask built from aranges compiles to
        # layout conversions (shared memory, barriers) in the loop, as the sm_90 code of the int4 v2
        # kernel shows.
        offs = rn_load[:, None] * words_per_row + (w0 + word)[None, :]
        ok = tl.full(offs.shape, w0, tl.int32) < w_end if MASKED else None
        return tl.load(w_ptr + offs, mask=ok, eviction_policy="evict_first")

    @triton.jit
    def _float8_bytes(w, ASM: tl.constexpr):
        # int32 words of four e4m3 bytes -> four float32 tensors, byte i (input 4j + i) in the i-th;
        # exact. ASM (sm_89+): two bytes at a time to f16x2 (one F2FP), each half to float32 (one
        # HADD2.F32), 1.5 instructions per byte. Else (Triton's CPU interpreter, which runs no PTX)
        # Triton's own conversion of each byte.
        if ASM:
            return tl.inline_asm_elementwise(
                """{
                .reg .b16 b01, b23, f0, f1, f2, f3;
                .reg .b32 h01, h23;
                mov.b32 {b01, b23}, $4;
                cvt.rn.f16x2.e4m3x2 h01, b01;
                cvt.rn.f16x2.e4m3x2 h23, b23;
                mov.b32 {f0, f1}, h01;
                mov.b32 {f2, f3}, h23;
                cvt.f32.f16 $0, f0;
                cvt.f32.f16 $1, f1;
                cvt.f32.f16 $2, f2;
                cvt.f32.f16 $3, f3;
                }""", "=r,=r,=r,=r,r", [w], dtype=(tl.float32, tl.float32, tl.float32, tl.float32),
                is_pure=True, pack=1)
        b0 = (w & 0xFF).to(tl.uint8).to(tl.float8e4nv, bitcast=True).to(tl.float32)
        b1 = ((w >> 8) & 0xFF).to(tl.uint8).to(tl.float8e4nv, bitcast=True).to(tl.float32)
        b2 = ((w >> 16) & 0xFF).to(tl.uint8).to(tl.float8e4nv, bitcast=True).to(tl.float32)
        b3 = ((w >> 24) & 0xFF).to(tl.uint8).to(tl.float8e4nv, bitcast=True).to(tl.float32)
        return b0, b1, b2, b3

    @triton.jit
    def _words_gemv_kernel(x_ptr, w_ptr, scale_ptr, y_ptr, N, K, words_per_row, norm_ptr, eps,
                           BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, PREFETCH: tl.constexpr,
                           WEIGHT: tl.constexpr, ASM: tl.constexpr, SWIGLU: tl.constexpr, NORM: tl.constexpr,
                           PDL: tl.constexpr):
        # Rowwise weights read as int32 words, passed from the host so Triton sees them 16-byte
        # aligned. WEIGHT "int8" or "float8" (e4m3): 4 inputs a word, input 4j + i in bits
        # 8i..8i+7; "bf16" (no scale): 2 inputs a word, input 2j + i in bits 16i..16i+15.
        # BLOCK_K is a power of two dividing K (the caller checks).
        # int8, the int4 v2 kernel's trick for bytes: XOR 0x80 makes each byte u = q + 128 in
        # 1..255, and (u & (0xFF << b)) read as float32 bits is exactly u * 2**(b - 149) (below
        # 2**24: subnormal or the first normal binade). x is multiplied by 2**(96 - b) (exact), so
        # every product is u * x * 2**-53; y = 2**53 * sum(u x) - 128 sum(x). Per weight byte: one
        # LOP3 and one FFMA, plus per word one XOR and one shift (byte 3, bits 24+ being the
        # exponent). Compiled for sm_90 at (8, 512, 2): 3.9 instructions per weight byte per thread
        # in the loop, the rowwise kernel 8.0 (benchmarks/gemv_sass.py, triton 3.9). Exact unless
        # |x| >= 2**32; |u x| < 2**-73 would lose relative precision.
        # float8: the same loads and loop, each word converted by _float8_bytes; the rowwise
        # kernel's byte loads left float8 at 3336 GB/s on w13 where int8 here reached 3937 (H200).
        # bf16: a bf16 is the top half of the float32 it stands for, so one shift or AND a weight.
        # NORM (0: off, else the x^2 pre-pass's tile): x is RMSNorm'ed with the weight at norm_ptr
        # first (_norm_rsqrt, _rms_normed).
        PER_WORD: tl.constexpr = 2 if WEIGHT == "bf16" else 4
        WORDS: tl.constexpr = BLOCK_K // PER_WORD
        m = tl.program_id(0)
        rn = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
        rn_load = tl.minimum(rn, N - 1)  # rows past N reread the last row: no masks in the loop
        w_start, w_end = _split_range(words_per_row, WORDS)
        word = tl.arange(0, WORDS)
        i = tl.arange(0, PER_WORD)
        byte_bit = tl.where(i < 3, 8 * i, 16)  # int8: where input 4j + i sits once masked
        x_scale = ((127 + 96 - byte_bit) << 23).to(tl.float32, bitcast=True)  # 2**(96 - bit)
        acc = tl.zeros((BLOCK_N, WORDS), dtype=tl.float32)
        x_sum = tl.zeros((WORDS,), dtype=tl.float32)
        if PREFETCH:  # tile 0 before the loop; the loop carries the tile it is about to compute
            w = _words_load(w_ptr, rn_load, words_per_row, word, w_start, w_end, False)
        # Weights first: x is the kernel before's output (pdl.py). Without PREFETCH nothing is loaded
        # before the wait. (Loading tile 0 there too, and each next tile at the end of an iteration,
        # added 4-5% instructions to the loop; PDL slowed int8wo with or without it: pdl.py.)
        pdl.wait_then_release(PDL)
        if NORM:  # after tile 0's load is issued (PREFETCH), so the two latencies overlap
            r = _norm_rsqrt(x_ptr, m, K, eps, NORM)
        for w0 in range(w_start, w_end, WORDS):
            if PREFETCH:  # the next tile's loads in flight while this one is summed
                w_next = _words_load(w_ptr, rn_load, words_per_row, word, w0 + WORDS, w_end, True)
            else:
                w = _words_load(w_ptr, rn_load, words_per_row, word, w0, w_end, False)
            k4 = PER_WORD * (w0 + word)[:, None] + i[None, :]
            x4 = tl.load(x_ptr + m * K + k4).to(tl.float32)
            if NORM:  # everything below (int8's x_sum too) sees the normalized x
                x4 = _rms_normed(x4, tl.load(norm_ptr + k4), r, x_ptr)
            if WEIGHT == "bf16":
                x0, x1 = tl.split(tl.broadcast_to(x4[None, :, :], (BLOCK_N, WORDS, 2)))
                acc = tl.fma((w << 16).to(tl.float32, bitcast=True), x0, acc)
                acc = tl.fma((w & -0x10000).to(tl.float32, bitcast=True), x1, acc)  # & 0xFFFF0000
            elif WEIGHT == "float8":
                x0, x1, x2, x3 = _split4(tl.broadcast_to(x4[None, :, :], (BLOCK_N, WORDS, 4)))
                f0, f1, f2, f3 = _float8_bytes(w, ASM)
                acc = tl.fma(f0, x0, acc)
                acc = tl.fma(f1, x1, acc)
                acc = tl.fma(f2, x2, acc)
                acc = tl.fma(f3, x3, acc)
            else:
                x_sum += tl.sum(x4, axis=1)
                x0, x1, x2, x3 = _split4(tl.broadcast_to((x4 * x_scale[None, :])[None, :, :], (BLOCK_N, WORDS, 4)))
                u = w ^ -0x7F7F7F80  # 0x80808080 as int32: each byte q -> q + 128
                acc = tl.fma((u & 0xFF).to(tl.float32, bitcast=True), x0, acc)
                acc = tl.fma((u & 0xFF00).to(tl.float32, bitcast=True), x1, acc)
                acc = tl.fma((u & 0xFF0000).to(tl.float32, bitcast=True), x2, acc)
                acc = tl.fma(((u >> 8) & 0xFF0000).to(tl.float32, bitcast=True), x3, acc)
            if PREFETCH:
                w = w_next
        if WEIGHT == "int8":
            y = tl.sum(acc, axis=1) * 2.0 ** 53 - 128.0 * tl.sum(x_sum, axis=0)
        else:
            y = tl.sum(acc, axis=1)
        if WEIGHT != "bf16":
            y = y * tl.load(scale_ptr + rn_load)
        _store_rows(y_ptr, y, m, rn, N, BLOCK_N, SWIGLU)

    @triton.jit
    def _int4_gemv_kernel(x_ptr, w_ptr, scale_ptr, zero_ptr, y_ptr, N, K,
                          GROUP: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
                          SWIGLU: tl.constexpr, PDL: tl.constexpr):
        # BLOCK_K is a power-of-two multiple of GROUP that divides K (checked by the caller).
        pdl.wait_then_release(PDL)
        m = tl.program_id(0)
        rn = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
        rb = tl.arange(0, BLOCK_K // 2)
        rk = tl.arange(0, BLOCK_K)
        rg = tl.arange(0, BLOCK_K // GROUP)
        n_ok = rn < N
        n_groups = K // GROUP
        acc = tl.zeros((BLOCK_N, BLOCK_K // GROUP), dtype=tl.float32)
        for k0 in range(0, K, BLOCK_K):
            packed = tl.load(w_ptr + rn[:, None] * (K // 2) + (k0 // 2 + rb)[None, :], mask=n_ok[:, None],
                             other=0, eviction_policy="evict_first").to(tl.int32)
            x_even, x_odd = tl.split(tl.reshape(tl.load(x_ptr + m * K + k0 + rk).to(tl.float32), (BLOCK_K // 2, 2)))
            # Low nibble is input 2j, high nibble 2j + 1.
            t = _exact_float(packed & 0xF) * x_even[None, :] + _exact_float(packed >> 4) * x_odd[None, :]
            # sum_k x (q s + z) = s * sum_k x q + z * sum_k x, per group: one FMA per weight.
            qx = tl.sum(tl.reshape(t, (BLOCK_N, BLOCK_K // GROUP, GROUP // 2)), axis=2)
            xs = tl.sum(tl.reshape(x_even + x_odd, (BLOCK_K // GROUP, GROUP // 2)), axis=1)
            g = rn[:, None] * n_groups + (k0 // GROUP + rg)[None, :]
            s = tl.load(scale_ptr + g, mask=n_ok[:, None], other=0.0).to(tl.float32)
            z = tl.load(zero_ptr + g, mask=n_ok[:, None], other=0.0).to(tl.float32)
            acc += qx * s + z * xs[None, :]
        _store_rows(y_ptr, tl.sum(acc, axis=1), m, rn, N, BLOCK_N, SWIGLU)  # grid 2D: no splits, y itself

    @triton.jit
    def _split8(t):
        # (..., 8) -> its eight (...) slices in order (register renames, as _split4).
        even, odd = tl.split(tl.reshape(t, t.shape[:-1] + [4, 2]))
        t0, t2, t4, t6 = _split4(even)
        t1, t3, t5, t7 = _split4(odd)
        return t0, t1, t2, t3, t4, t5, t6, t7

    @triton.jit
    def _int4_v2_load(w_ptr, scale_ptr, zero_ptr, rn_load, words_per_row, n_groups, rg, w0, w_end,
                      MASKED: tl.constexpr, WORDS: tl.constexpr):
        # The weight words (rows, groups, words of a group), scales and zeros (rows, groups) of the
        # tile at word w0. MASKED: w0 may be at or past w_end, the end of this program's slice of the
        # row (then all is masked off, and never used); the masks are constant over each 4 words, so
        # the loads stay 16 bytes wide.
        # The words are loaded as (rows, words) and then reshaped: loaded 3-D, Triton 3.6 spread a
        # warp's threads over rows before groups (3.9 the other way round: it breaks the tie in the
        # two axes' contiguity the other way), each thread then had 2 rows, not 8, to share its x
        # values with, and the loop took 8.9 instructions per weight byte where it now takes 6.4 (both
        # at (32, 512, 2) with PREFETCH).
        flat = tl.arange(0, rg.shape[0] * WORDS)
        w_ok, g_ok = None, None
        if MASKED:
            w_ok = (w0 + flat < w_end)[None, :]
            g_ok = (w0 // WORDS + rg < w_end // WORDS)[None, :]
        w = tl.load(w_ptr + rn_load[:, None] * words_per_row + (w0 + flat)[None, :], mask=w_ok,
                    eviction_policy="evict_first")
        g = rn_load[:, None] * n_groups + (w0 // WORDS + rg)[None, :]
        return (tl.reshape(w, (rn_load.shape[0], rg.shape[0], WORDS)), tl.load(scale_ptr + g, mask=g_ok),
                tl.load(zero_ptr + g, mask=g_ok))

    @triton.jit
    def _int4_word_dot(w, x, qx):
        # qx + the eight products of word w's nibbles with their x (..., 8), scaled as
        # _int4_gemv_v2_kernel says: one LOP3 and one FFMA a nibble, one shift a word.
        x0, x1, x2, x3, x4, x5, x6, x7 = _split8(x)
        hi = w >> 8  # nibbles 6 and 7 to bits 16..23
        qx = tl.fma((w & 0xF).to(tl.float32, bitcast=True), x0, qx)
        qx = tl.fma((w & 0xF0).to(tl.float32, bitcast=True), x1, qx)
        qx = tl.fma((w & 0xF00).to(tl.float32, bitcast=True), x2, qx)
        qx = tl.fma((w & 0xF000).to(tl.float32, bitcast=True), x3, qx)
        qx = tl.fma((w & 0xF0000).to(tl.float32, bitcast=True), x4, qx)
        qx = tl.fma((w & 0xF00000).to(tl.float32, bitcast=True), x5, qx)
        qx = tl.fma((hi & 0xF0000).to(tl.float32, bitcast=True), x6, qx)
        return tl.fma((hi & 0xF00000).to(tl.float32, bitcast=True), x7, qx)

    @triton.jit
    def _int4_gemv_v2_kernel(x_ptr, w_ptr, scale_ptr, zero_ptr, y_ptr, N, K, words_per_row, norm_ptr, eps,
                             GROUP: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
                             PREFETCH: tl.constexpr, SWIGLU: tl.constexpr, NORM: tl.constexpr,
                             PDL: tl.constexpr):
        # w_ptr: the packed weights as int32 words (N, words_per_row = K // 8), passed from the host
        # so Triton sees it divisible by 4 and loads 16 bytes at a time. BLOCK_K is a power-of-two
        # multiple of GROUP that divides K (the caller checks); GROUP is a multiple of 32, so each
        # word lies in one group and a group's words split into 4 runs of GROUP // 32 (the host
        # runs v1 for smaller groups). Tiles are (rows, groups, words of a group): a group's scale
        # broadcasts over its words for free, and groups are summed once, after the loop.
        #
        # A nibble is made a float by one AND: an int32 below 2**24 read as float32 bits is exactly
        # itself * 2**-149 (subnormals, then the first normal binade), so (w & (0xF << b)) is
        # q * 2**(b - 149). x is multiplied by 2**(96 - b) (exact; shared by every row), putting each
        # product at q * x * 2**-53, and the scale by 2**53. Per weight: one LOP3 and one FFMA, plus
        # per word one shift for nibbles 6 and 7 (bits 24+ are the exponent). Exact unless |x| >=
        # 2**32 or |scale| >= 2**75; |x q| < 2**-73 would lose relative precision (not activations).
        # A thread's 4 adjacent words of a group (one 16-byte load) go into one chain of 32 FMAs per
        # row, then one FMA with the scale: a chain per word took 24 more instructions and 84 more
        # registers a tile. Compiled for sm_90 by Triton 3.6 (the H200's) at the entry, (32, 512, 2)
        # without PREFETCH: 5.9 instructions per weight byte per thread in the loop, 122 registers;
        # with PREFETCH 6.4 and 158 (gemv_sass.py).
        # NORM: as the word kernel's.
        WORDS: tl.constexpr = GROUP // 8
        GROUPS: tl.constexpr = BLOCK_K // GROUP
        m = tl.program_id(0)
        rn = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
        rn_load = tl.minimum(rn, N - 1)  # rows past N reread the last row: no masks in the loop
        rg = tl.arange(0, GROUPS)
        word = rg[:, None] * WORDS + tl.arange(0, WORDS)[None, :]
        n_groups = K // GROUP
        w_start, w_end = _split_range(words_per_row, BLOCK_K // 8)
        i = tl.arange(0, 8)
        nibble_bit = tl.where(i < 6, 4 * i, 4 * i - 8)  # where input 8j + i sits once masked
        x_scale = ((127 + 96 - nibble_bit) << 23).to(tl.float32, bitcast=True)  # 2**(96 - bit)
        acc = tl.zeros((BLOCK_N, GROUPS, WORDS // 4), dtype=tl.float32)
        acc_zero = tl.zeros((BLOCK_N, GROUPS), dtype=tl.float32)
        if PREFETCH:  # tile 0 before the loop; the loop carries the tile it is about to compute
            w, s, z = _int4_v2_load(w_ptr, scale_ptr, zero_ptr, rn_load, words_per_row, n_groups, rg, w_start,
                                    w_end, False, WORDS)
        pdl.wait_then_release(PDL)  # weights first: x is the kernel before's output (pdl.py)
        if NORM:  # after tile 0's loads are issued (PREFETCH), so the latencies overlap
            r = _norm_rsqrt(x_ptr, m, K, eps, NORM)
        for w0 in range(w_start, w_end, BLOCK_K // 8):
            if PREFETCH:
                # Issue the next tile's loads first, so they are in flight while this one is decoded
                # (Triton pipelines tl.dot operands only). Past the row's end all masked off. x stays
                # in the loop: it is small and L2-resident, and a second copy would cost registers.
                w_next, s_next, z_next = _int4_v2_load(w_ptr, scale_ptr, zero_ptr, rn_load, words_per_row, n_groups,
                                                       rg, w0 + BLOCK_K // 8, w_end, True, WORDS)
            else:
                w, s, z = _int4_v2_load(w_ptr, scale_ptr, zero_ptr, rn_load, words_per_row, n_groups, rg, w0,
                                        w_end, False, WORDS)
            k8 = 8 * (w0 + word)[:, :, None] + i[None, None, :]
            x8 = tl.load(x_ptr + m * K + k8).to(tl.float32)
            if NORM:  # the group sums below too see the normalized x
                x8 = _rms_normed(x8, tl.load(norm_ptr + k8), r, x_ptr)
            x_group = tl.sum(tl.sum(x8, axis=2), axis=1)
            # Word 4j + c of a group is run j's c-th: (rows, groups, runs, 4 words[, 8 inputs]).
            xr = tl.reshape(tl.broadcast_to((x8 * x_scale[None, None, :])[None, :, :, :], (BLOCK_N, GROUPS, WORDS, 8)),
                            (BLOCK_N, GROUPS, WORDS // 4, 4, 8))
            xa, xb, xc, xd = _split4(tl.permute(xr, (0, 1, 2, 4, 3)))
            wa, wb, wc, wd = _split4(tl.reshape(w, (BLOCK_N, GROUPS, WORDS // 4, 4)))
            qx = _int4_word_dot(wa, xa, tl.zeros((BLOCK_N, GROUPS, WORDS // 4), dtype=tl.float32))
            qx = _int4_word_dot(wb, xb, qx)
            qx = _int4_word_dot(wc, xc, qx)
            qx = _int4_word_dot(wd, xd, qx)
            # sum_k x (q s + z) = s * sum_k x q + z * sum_k x: the zero term once per group.
            acc = tl.fma(qx, (s.to(tl.float32) * 2.0 ** 53)[:, :, None], acc)
            acc_zero = tl.fma(z.to(tl.float32), x_group[None, :], acc_zero)
            if PREFETCH:
                w, s, z = w_next, s_next, z_next
        y = tl.sum(tl.sum(acc, axis=2), axis=1) + tl.sum(acc_zero, axis=1)
        _store_rows(y_ptr, y, m, rn, N, BLOCK_N, SWIGLU)

    def _has_e4m3_convert(x: Tensor) -> bool:
        # PTX's cvt from e4m3 needs sm_89+; Triton's interpreter runs no PTX at all.
        return x.is_cuda and torch.cuda.get_device_capability(x.device) >= (8, 9)

    def _tiling_block(k: int, block_k: int, minimum: int = 1) -> int:
        """The largest power of two up to block_k (but at least `minimum`) that divides K: tiles with
        no partial last tile, for the kernels that read whole words or groups without masks."""
        block_k = max(minimum, min(block_k, 1 << (k.bit_length() - 1)))
        while k % block_k:
            block_k //= 2
        return block_k

    def _launch_shape(kind: str, n: int, config, narrow: bool) -> GemvConfig:
        c = gemv_config(kind, config)
        # Small matrices: narrower blocks, so every SM gets several programs; with split-K the
        # blocks keep their width and K is split instead (_k_splits).
        block_n = c.block_n
        if (config is None or narrow) and not c.split:
            while block_n > 4 and triton.cdiv(n, block_n) < MIN_PROGRAMS:
                block_n //= 2
        return c._replace(block_n=block_n)

    def _k_splits(n: int, words_per_row: int, block_n: int, tile_words: int, budget: int = 1) -> int:
        """Split-K for matrices with few blocks of rows: the most splits (a power of two up to
        MAX_SPLITS) keeping the programs within budget x MIN_PROGRAMS (budget: the config's split
        field), each split a whole number of tiles.
        Why: a program walks its K tiles one after another, a DRAM round trip each (prefetch hides
        one); w2 (K = 14336) has 28 tiles of 512 per program, and split it ran at 2775 GB/s against
        2422 narrowed (int8 v2, H200; docs/performance.md)."""
        splits = 1
        while (splits < MAX_SPLITS and triton.cdiv(n, block_n) * splits * 2 <= budget * MIN_PROGRAMS
               and words_per_row % (2 * splits * tile_words) == 0):
            splits *= 2
        return splits

    def _split_output(rows: int, n: int, splits: int, x: Tensor) -> Tensor:
        # One split writes y itself; more write fp32 partial sums, added up by _reduce_splits (in the
        # compiled decode step that sum fuses into the next kernel: deterministic, no atomics).
        return torch.empty(splits, rows, n, dtype=x.dtype if splits == 1 else torch.float32, device=x.device)

    def _reduce_splits(y: Tensor, x: Tensor) -> Tensor:
        return (y[0] if y.shape[0] == 1 else y.sum(0).to(x.dtype)).view(*x.shape[:-1], y.shape[-1])

    def _gemv_output(x2: Tensor, n: int, splits: int, block_n: int, swiglu: bool) -> tuple[Tensor, bool]:
        """The kernel's output, and whether its epilogue does SwiGLU (then it writes n // 2 columns):
        that needs whole groups of SWIGLU_ROWS in each program and final sums, not split-K partials.
        Else (narrowed BLOCK_N < 8, split-K) the kernel writes all n rows and _finish does it in torch."""
        fused = swiglu and block_n % SWIGLU_ROWS == 0 and splits == 1
        return _split_output(x2.shape[0], n // 2 if fused else n, splits, x2), fused

    def _finish(y: Tensor, x: Tensor, swiglu: bool, fused: bool) -> Tensor:
        y = _reduce_splits(y, x)
        return swiglu_from_rows(y) if swiglu and not fused else y

    def _norm_args(x2: Tensor, norm_weight: Tensor | None, eps: float) -> tuple[Tensor, float, int]:
        # The NORM kernels' norm_ptr, eps and NORM (the pre-pass's tile, _norm_rsqrt); without a
        # norm, any pointer (never read) and NORM=0.
        if norm_weight is None:
            return x2, 0.0, 0
        k = x2.shape[1]
        if norm_weight.shape != (k,):
            raise ValueError(f"norm_weight must have shape ({k},), not {tuple(norm_weight.shape)}")
        return norm_weight.contiguous(), float(eps), min(triton.next_power_of_2(k), NORM_TILE)

    # The ops are opaque custom ops: torch.compile (fullgraph too) calls each as one extern kernel,
    # which launches the Triton kernel eagerly, so a CUDA graph captured around the compiled step
    # records our launch options, PDL's among them (a triton_op traced into inductor's code would
    # drop them). The split-K sum and an unfused SwiGLU stay outside the op (_finish), where
    # inductor fuses them into the next kernel. Each op's fake impl is the same function, not
    # launching: it only allocates the output.

    def _rowwise_gemv_run(x: Tensor, qweight: Tensor, scale: Tensor | None, config: list[int] | None, narrow: bool,
                          swiglu: bool, norm_weight: Tensor | None, eps: float, launch: bool) -> Tensor:
        n, k = qweight.shape
        kind = _config_key(qweight.dtype)
        block_n, block_k, num_warps, kernel, prefetch, split = _launch_shape(kind, n, config, narrow)
        if kernel not in (1, 2) or (kernel == 2 and qweight.dtype not in WORD_KERNEL_WEIGHTS):
            raise ValueError(f"rowwise GEMV kernel must be 1, or 2 for int8, float8_e4m3fn and bfloat16 weights; "
                             f"not {kernel} for {qweight.dtype}")
        x2 = x.reshape(-1, k).contiguous()
        grid = (x2.shape[0], triton.cdiv(n, block_n))
        # v2 reads int32 words with no partial tiles: it needs K a whole number of words, rows that
        # view as int32 (contiguous, 4-byte aligned), and takes the largest power-of-two BLOCK_K up
        # to the config's that divides K; else v1 runs.
        weight, per_word = WORD_KERNEL_WEIGHTS.get(qweight.dtype, (None, 1))
        if (kernel == 2 and k % per_word == 0 and qweight.is_contiguous()
                and qweight.storage_offset() * qweight.element_size() % 4 == 0):
            block_k = _tiling_block(k, block_k, minimum=per_word)
            splits = _k_splits(n, k // per_word, block_n, block_k // per_word, split) if split else 1
            y, fused = _gemv_output(x2, n, splits, block_n, swiglu)
            g, eps, norm = _norm_args(x2, norm_weight, eps)
            if launch:
                _words_gemv_kernel[grid + (splits,)](x2, qweight.view(torch.int32), qweight if scale is None else scale,
                                                     y, n, k, k // per_word, g, eps, BLOCK_N=block_n, BLOCK_K=block_k,
                                                     PREFETCH=prefetch, WEIGHT=weight,
                                                     ASM=weight == "float8" and _has_e4m3_convert(x), SWIGLU=fused,
                                                     NORM=norm, num_warps=num_warps, **pdl.launch_args(x, kind))
            return y
        splits = _k_splits(n, k, block_n, block_k, split) if split else 1
        y, fused = _gemv_output(x2, n, splits, block_n, swiglu)
        if launch:
            if norm_weight is not None:  # the rowwise kernel has no prologue: the norm in torch first
                x2 = normed_input(x2, norm_weight, eps)
            _rowwise_gemv_kernel[grid + (splits,)](x2, qweight, scale if scale is not None else qweight, y, n, k,
                                                   HAS_SCALE=scale is not None, IS_INT8=qweight.dtype == torch.int8,
                                                   BLOCK_N=block_n, BLOCK_K=block_k, PREFETCH=prefetch,
                                                   SPLIT=splits > 1, SWIGLU=fused, num_warps=num_warps,
                                                   **pdl.launch_args(x, kind))
        return y

    @torch.library.custom_op("llama::rowwise_gemv", mutates_args=())
    def _rowwise_gemv_op(x: Tensor, qweight: Tensor, scale: Tensor | None, config: list[int] | None, narrow: bool,
                         swiglu: bool, norm_weight: Tensor | None, eps: float) -> Tensor:
        return _rowwise_gemv_run(x, qweight, scale, config, narrow, swiglu, norm_weight, eps, launch=True)

    @_rowwise_gemv_op.register_fake
    def _(x, qweight, scale, config, narrow, swiglu, norm_weight, eps):
        return _rowwise_gemv_run(x, qweight, scale, config, narrow, swiglu, norm_weight, eps, launch=False)

    def rowwise_gemv(x: Tensor, qweight: Tensor, scale: Tensor | None = None,
                     config: list[int] | None = None, narrow: bool = False, swiglu: bool = False,
                     norm_weight: Tensor | None = None, eps: float = 0.0) -> Tensor:
        """x (..., K) @ (qweight * scale[:, None]).T for a few rows of x; qweight (N, K).

        config None: the GEMV_CONFIGS entry, narrowed for matrices with few rows (MIN_PROGRAMS);
        a config is taken as given unless narrow. swiglu: qweight is a fused w13 (SWIGLU_ROWS); the
        result is silu(gate) * up, (..., N // 2). norm_weight (K,): x is RMSNorm'ed first
        (normed_input: in the word kernel's prologue, else in torch before the rowwise kernel)."""
        y = _rowwise_gemv_op(x, qweight, scale, config, narrow, swiglu, norm_weight=norm_weight, eps=eps)
        return _finish(y, x, swiglu, y.shape[-1] != qweight.shape[0])

    def _int4_gemv_run(x: Tensor, packed: Tensor, scale: Tensor, zero: Tensor, config: list[int] | None,
                       narrow: bool, swiglu: bool, norm_weight: Tensor | None, eps: float, launch: bool) -> Tensor:
        n, k = packed.shape[0], 2 * packed.shape[1]
        block_n, block_k, num_warps, kernel, prefetch, split = _launch_shape("int4", n, config, narrow)
        if kernel not in (1, 2):
            raise ValueError(f"int4 GEMV kernel must be 1 or 2, not {kernel}")
        group = k // scale.shape[1]
        block_k = _tiling_block(k, block_k, minimum=group)  # whole groups, no partial tile
        x2 = x.reshape(-1, k).contiguous()
        grid = (x2.shape[0], triton.cdiv(n, block_n))
        # v2 reads whole int32 words inside one group, in runs of 4: it needs group % 32 == 0 (8
        # inputs a word, 4 words a 16-byte load) and rows that view as int32 (contiguous, 4-byte
        # aligned); else v1 runs.
        if kernel == 2 and group % 32 == 0 and packed.is_contiguous() and packed.storage_offset() % 4 == 0:
            splits = _k_splits(n, k // 8, block_n, block_k // 8, split) if split else 1
            y, fused = _gemv_output(x2, n, splits, block_n, swiglu)
            g, eps, norm = _norm_args(x2, norm_weight, eps)
            if launch:
                _int4_gemv_v2_kernel[grid + (splits,)](x2, packed.view(torch.int32), scale, zero, y, n, k, k // 8, g,
                                                       eps, GROUP=group, BLOCK_N=block_n, BLOCK_K=block_k,
                                                       PREFETCH=prefetch, SWIGLU=fused, NORM=norm, num_warps=num_warps,
                                                       **pdl.launch_args(x, "int4"))
            return y
        y, fused = _gemv_output(x2, n, 1, block_n, swiglu)  # v1: no split-K
        if launch:
            if norm_weight is not None:  # v1 has no prologue: the norm in torch first
                x2 = normed_input(x2, norm_weight, eps)
            _int4_gemv_kernel[grid](x2, packed, scale, zero, y, n, k, GROUP=group, BLOCK_N=block_n, BLOCK_K=block_k,
                                    SWIGLU=fused, num_warps=num_warps, **pdl.launch_args(x, "int4"))
        return y

    @torch.library.custom_op("llama::int4_gemv", mutates_args=())
    def _int4_gemv_op(x: Tensor, packed: Tensor, scale: Tensor, zero: Tensor, config: list[int] | None,
                      narrow: bool, swiglu: bool, norm_weight: Tensor | None, eps: float) -> Tensor:
        return _int4_gemv_run(x, packed, scale, zero, config, narrow, swiglu, norm_weight, eps, launch=True)

    @_int4_gemv_op.register_fake
    def _(x, packed, scale, zero, config, narrow, swiglu, norm_weight, eps):
        return _int4_gemv_run(x, packed, scale, zero, config, narrow, swiglu, norm_weight, eps, launch=False)

    def int4_gemv(x: Tensor, packed: Tensor, scale: Tensor, zero: Tensor,
                  config: list[int] | None = None, narrow: bool = False, swiglu: bool = False,
                  norm_weight: Tensor | None = None, eps: float = 0.0) -> Tensor:
        """x (..., K) @ dequantize_int4(packed, scale, zero).T for a few rows of x.

        config: [BLOCK_N, BLOCK_K, num_warps], optionally then kernel (1 or 2), prefetch and split-K
        (0 or 1; v2 only), read by gemv_config; None takes GEMV_CONFIGS["int4"] whole, narrowed as
        rowwise_gemv's. swiglu, norm_weight and eps: as rowwise_gemv's (the norm in v2's prologue,
        in torch before v1)."""
        y = _int4_gemv_op(x, packed, scale, zero, config, narrow, swiglu, norm_weight=norm_weight, eps=eps)
        return _finish(y, x, swiglu, y.shape[-1] != packed.shape[0])


# ----------------------------------------------------------------------------- modules

class _GemvLinear(nn.Module):
    """What both GEMV linears share: a fused w13's SwiGLU (swiglu: rows stored in swiglu_row_order,
    forward returns silu(gate) * up), an optional RMSNorm of the input (take_norm), and the torch
    path (CPU, prefill, no Triton) on the dequantized weight."""

    def __init__(self, swiglu: bool):
        super().__init__()
        self.swiglu = swiglu
        self.register_buffer("norm_weight", None)
        self.norm_eps = 0.0

    def take_norm(self, weight: Tensor, eps: float) -> None:
        """RMSNorm x with this weight and eps before the linear (quantize_linears' fuse_norms): on the
        GEMV path in the kernel's prologue, on the torch path with llama.model.rms_norm."""
        self.norm_weight = weight.detach()
        self.norm_eps = float(eps)

    def dequantize(self, stored_order: bool = False) -> Tensor:
        """The weight (N, K) the module stands for: a fused w13's rows in their original order (gate,
        then up) unless stored_order, so F.linear with it is the unfused w13."""
        w = self._dequantize_stored()
        return _original_rows(w) if self.swiglu and not stored_order else w

    def _torch_path(self, x: Tensor) -> Tensor:
        if self.norm_weight is not None:
            x = rms_norm(x, self.norm_weight, self.norm_eps)  # exactly the RMSNorm module it replaced
        y = F.linear(x, self.dequantize(stored_order=True).to(x.dtype))
        return swiglu_from_rows(y) if self.swiglu else y  # the kernels' SwiGLU epilogue, in torch

    def _fusion_repr(self) -> str:
        return f", swiglu={self.swiglu}" + (f", norm_eps={self.norm_eps}" if self.norm_weight is not None else "")


class RowwiseLinear(_GemvLinear):
    """Weight-only linear, int8 or float8_e4m3fn with a float32 scale per output row; with
    dtype=None the weight stays in its own dtype (no scale) and only the GEMV kernel changes.
    swiglu: the weight is a FeedForward's w13 (gate rows, then up rows), see _GemvLinear."""

    def __init__(self, weight: Tensor, dtype: torch.dtype | None = torch.int8, swiglu: bool = False):
        super().__init__(swiglu)
        weight = _swiglu_rows(weight) if swiglu else weight
        qweight, scale = (weight.clone(), None) if dtype is None else quantize_rowwise(weight, dtype)
        self.register_buffer("qweight", qweight)
        self.register_buffer("scale", scale)
        self.out_dtype = weight.dtype

    def _dequantize_stored(self) -> Tensor:
        return self.qweight if self.scale is None else dequantize_rowwise(self.qweight, self.scale, self.out_dtype)

    # rowwise_gemv calls a custom op, which torch.compile (fullgraph too) keeps as one call and CUDA
    # graphs capture like any other launch. The GEMV_CONFIGS entry is
    # passed in, not read inside the op: so it is part of the compiled graph, and of the key of
    # inductor's on-disk cache. Read inside, a process with another entry was handed the graph
    # compiled with the first one (docs/performance.md, sixth H200 session).
    def forward(self, x: Tensor) -> Tensor:
        if triton_gemv_available(x):
            return rowwise_gemv(x, self.qweight, self.scale, list(GEMV_CONFIGS[_config_key(self.qweight.dtype)]), True,
                                self.swiglu, norm_weight=self.norm_weight, eps=self.norm_eps)
        return self._torch_path(x)

    def extra_repr(self) -> str:
        return (f"out={self.qweight.shape[0]}, in={self.qweight.shape[1]}, dtype={self.qweight.dtype}"
                f"{self._fusion_repr()}")


class Int4Linear(_GemvLinear):
    """Weight-only linear, asymmetric int4 with a scale and zero per group of `group_size` inputs;
    swiglu as RowwiseLinear's."""

    def __init__(self, weight: Tensor, group_size: int, swiglu: bool = False):
        super().__init__(swiglu)
        packed, scale, zero = quantize_int4(_swiglu_rows(weight) if swiglu else weight, group_size)
        self.register_buffer("qweight", packed)
        self.register_buffer("scale", scale)
        self.register_buffer("zero", zero)
        self.group_size = group_size

    def _dequantize_stored(self) -> Tensor:
        return dequantize_int4(self.qweight, self.scale, self.zero)

    def forward(self, x: Tensor) -> Tensor:
        if triton_gemv_available(x) and _is_power_of_two(self.group_size):  # the entry passed in: see RowwiseLinear
            return int4_gemv(x, self.qweight, self.scale, self.zero, list(GEMV_CONFIGS["int4"]), True, self.swiglu,
                             norm_weight=self.norm_weight, eps=self.norm_eps)
        return self._torch_path(x)

    def extra_repr(self) -> str:
        return (f"out={self.qweight.shape[0]}, in={2 * self.qweight.shape[1]}, group_size={self.group_size}"
                f"{self._fusion_repr()}")


SCHEMES = {"none": None, "int8": torch.int8, "float8": torch.float8_e4m3fn, "int4": torch.uint8}


def quantize_linears(model: nn.Module, scheme: str, group_size: int = 128,
                     filter_fn: Callable[[nn.Module, str], bool] | None = None, prefix: str = "",
                     swiglu: bool = True, fuse_norms: bool | None = None) -> nn.Module:
    """Swap nn.Linear modules of `model` in place for our weight-only linears.

    scheme: "int8" | "float8" (rowwise), "int4" (groupwise, `group_size`), or "none" (weights kept
    as they are, our GEMV kernel only). filter_fn(module, fqn) picks the linears, as in torchao's
    quantize_ (default: all of them). swiglu: the linear a module names in its `swiglu_linear`
    (FeedForward's w13) also computes silu(gate) * up (SWIGLU_ROWS), where its rows pair up.
    fuse_norms: each RMSNorm a module names in its `norm_into` moves into the linear that reads its
    output, where that linear is now one of ours (RMSNorm in the GEMV, above); the norm module
    becomes nn.Identity. None: for the schemes in FUSE_NORMS_BY_DEFAULT only.
    """
    if scheme not in SCHEMES:
        raise ValueError(f"scheme must be one of {', '.join(SCHEMES)}, not {scheme!r}")
    if fuse_norms is None:
        fuse_norms = scheme in FUSE_NORMS_BY_DEFAULT
    for name, child in list(model.named_children()):
        fqn = f"{prefix}{name}"
        if isinstance(child, nn.Linear) and (filter_fn is None or filter_fn(child, fqn)):
            if child.bias is not None:
                raise ValueError(f"{name}: weight-only GEMV linears take no bias")
            w = child.weight.detach()
            fuse = swiglu and name == getattr(model, "swiglu_linear", None) and w.shape[0] % SWIGLU_ROWS == 0
            new = Int4Linear(w, group_size, fuse) if scheme == "int4" else RowwiseLinear(w, SCHEMES[scheme], fuse)
            setattr(model, name, new)
        else:
            quantize_linears(child, scheme, group_size, filter_fn, prefix=f"{fqn}.", swiglu=swiglu, fuse_norms=fuse_norms)
    if fuse_norms:
        _fuse_norms(model)
    return model


def _fuse_norms(model: nn.Module) -> None:
    """Move each of `model.norm_into`'s RMSNorms into its linear, once that is one of ours."""
    for norm_name, linear_name in getattr(model, "norm_into", {}).items():
        norm = getattr(model, norm_name, None)
        try:
            linear = model.get_submodule(linear_name)
        except AttributeError:
            continue
        if isinstance(norm, RMSNorm) and isinstance(linear, _GemvLinear) and linear.norm_weight is None:
            linear.take_norm(norm.weight, norm.eps)
            setattr(model, norm_name, nn.Identity())
