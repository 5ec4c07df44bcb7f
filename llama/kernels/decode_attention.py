"""Attention over a (quantized) KV cache that reads only the filled prefix: one Triton kernel
for decode (split-K flash-decoding) and chunked prefill (flash attention, causal from positions).

Nothing here builds a mask: each query row's position comes from `input_pos` (a device tensor),
and a row attends to cache slots 0..pos. The filled length is max(pos) + 1, computed inside the
kernel, so a decode step makes no host sync and can be captured in a CUDA graph.

Storage formats (one byte layout per format, dequantized in registers, never to a bf16 copy):
  FMT_MODEL  K/V in the model dtype, no scales
  FMT_INT8   int8, one scale per (token, head)                                 q = round(x / (amax/127))
  FMT_FP8    float8_e4m3fn, one scale per (token, head)                        q = x / (amax/448)
  FMT_INT4   int4 in [-8, 7], one scale per (token, head, 32 dims); byte j of a row holds dim j in its
             low nibble and dim j + D/2 in its high nibble, so a tile unpacks into its two halves.
The kernel works on the two halves of head_dim separately (q_lo.k_lo + q_hi.k_hi), so the int4
layout needs no interleave and every format shares one code path.

GQA: one program serves all G = n_heads / n_kv_heads query heads of one KV head, so each K/V
tile is read once for G heads (rows of a program are (token, group) pairs).
"""
from __future__ import annotations

import contextlib
import math
import os

import torch
import torch.nn.functional as F
from torch import Tensor

from llama.kernels import pdl

try:
    import triton
    import triton.language as tl
except ImportError:  # CPU-only installs: the torch fallback below is used
    triton = None

FMT_MODEL, FMT_INT8, FMT_FP8, FMT_INT4 = 0, 1, 2, 3
INT4_GROUP = 32
# Triton's CPU interpreter (TRITON_INTERPRET=1, used by the CPU tests) gets bf16 tl.dot wrong: use fp32 there.
INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"
# The dtype of the kernel's tl.dot inputs (accumulation is fp32 throughout): 0 bf16, 1 fp16, 2 fp32.
# Dequantized K/V go to the dot in the model's dtype. (fp16 dots for quantized K/V, one convert per
# value instead of two, measured no faster at a 131072-token context on an H200.)
DOT_BF16, DOT_FP16, DOT_FP32 = 0, 1, 2
# Launch shapes (BLOCK_M query rows, BLOCK_N cache slots per tile, num_warps, num_stages, splits
# per KV head). Decode is one query row per head group, so its tile is (16, BLOCK_N) and the cache
# is cut into `splits` chunks per KV head (8 KV heads x 32 = 256 programs, ~2 per SM on an H100/H200)
# merged by a combine kernel (fewer splits for a short cache: MIN_SLOTS_PER_SPLIT); prefill runs one
# program per BLOCK_M rows over the whole prefix.
# Decode shapes per format: the fastest at a 131072-token context on an H200
# (benchmarks/long_context.py --kernel_sweep, docs/performance.md).
DECODE_CONFIGS = {FMT_MODEL: (16, 64, 4, 2, 64), FMT_INT8: (16, 128, 4, 3, 32), FMT_FP8: (16, 128, 4, 3, 32),
                  FMT_INT4: (16, 128, 4, 2, 32)}
PREFILL_CONFIG = (128, 64, 8, 3, 1)
DECODE_MAX_ROWS = 16  # query rows (tokens x heads per KV head) up to which a call counts as decode
# The configured splits suit long contexts. With a short cache most of them are empty, yet they
# still cost partial buffers and a combine kernel (a 208-slot cache on an H200, 64 splits: ~4.0 us
# attention + 2.75 us combine per layer; one split: 6.2 us, no combine). So each split covers at
# least MIN_SLOTS_PER_SPLIT slots (2-4 tiles of BLOCK_N; a round pick, not swept): a cache under
# 512 slots runs as one split with no combine; from 8192 slots the quantized formats keep all their
# configured splits (bf16 K/V: 32 of 64 at 8192, 256 programs, still ~2 per SM).
# The cap uses the cache's capacity (a host number), never the filled length, which lives on the
# device: no host sync, and a captured CUDA graph stays valid as the cache fills.
MIN_SLOTS_PER_SPLIT = 256


# The fused decode step (_decode_step_kernel: RoPE, cache write and attention in one launch), for
# model-dtype caches of up to FUSED_MAX_SLOTS slots, one program per KV head walking the whole
# prefix, as the unfused kernel does for such caches (decode_splits); longer caches keep the unfused
# path, its splits and combine kernel. (BLOCK_N, num_warps, num_stages) from 36 shapes timed on an
# H200 at 60, 110 and 200 filled slots (`benchmarks/long_context.py --fused_sweep 60,110,200`,
# docs/performance.md, eighth session): 4.56, 4.52 and 6.32 us; the fastest at 110, 5% behind
# the fastest at 200 (6.04), 16% at 60 (3.93); DECODE_CONFIGS[FMT_MODEL]'s (64, 4, 2) took 3.93,
# 5.14 and 7.54. A 200-token decode spends most steps past 60 slots.
# (Splits merged in-kernel by the last program to finish, counted with an atomic, gave a wrong
# result in one launch shape on the H200, eighth session. Dropped.)
FUSED_DECODE_CONFIG = (128, 4, 2)
FUSED_MAX_SLOTS = 2 * MIN_SLOTS_PER_SPLIT - 1
# Two choices for the fused step on sm_90+, both off: neither measured faster (read at launch, so a
# CUDA graph keeps what was set at its capture; benchmarks/decode_roofline.py's kvpf and late
# variants). bf16 ours, one process on an H200 (thirteenth session, call A, docs/performance.md):
# KV_PREFETCH 247.0/247.9/247.6 tok/s, RELEASE_LATE 246.9/246.8/246.9, both 245.8/246.3/246.3,
# against 247.3/248.0/248.1 with neither. Why they might have paid, from the twelfth session's
# kernel timeline (bf16, PDL on):
# the step ends 6.7 us after wqkv does, against 5.0-5.1 without PDL, as wo's GEMV, released at the step's
# start, asks DRAM for 8 MB of first tiles while attention's loads wait behind them.
# KV_PREFETCH: before PDL's wait, one bulk L2 prefetch (Hopper's cp.async.bulk.prefetch.L2) of the
# program's cache prefix, K and V: written by earlier steps, complete before this kernel may start,
# so the loads of attention then hit L2. RELEASE_LATE: release the next kernel after attention's
# loop instead of right after the wait, so wo's first tiles queue behind attention's loads.
KV_PREFETCH = False
RELEASE_LATE = False
STEP_FLAGS = ("KV_PREFETCH", "RELEASE_LATE")


def step_flags_on() -> list[str]:
    """The fused step's flags (STEP_FLAGS) that are on."""
    return [flag for flag in STEP_FLAGS if globals()[flag]]


@contextlib.contextmanager
def step_flags(*flags: str):
    """These STEP_FLAGS on inside this block (a CUDA graph captured in it keeps them)."""
    unknown = set(flags) - set(STEP_FLAGS)
    if unknown:
        raise ValueError(f"unknown decode-step flags {sorted(unknown)}; known: {', '.join(STEP_FLAGS)}")
    before = {flag: globals()[flag] for flag in STEP_FLAGS}
    globals().update(dict.fromkeys(flags, True))
    try:
        yield
    finally:
        globals().update(before)


def fused_decode_available(qkv: Tensor, cache_slots: int) -> bool:
    """Whether decode_step_attention takes this step: one token on CUDA, a cache of at most
    FUSED_MAX_SLOTS slots."""
    return triton is not None and qkv.is_cuda and qkv.shape[1] == 1 and cache_slots <= FUSED_MAX_SLOTS


# ----------------------------------------------------------------------------- quantize / dequantize (torch)

def quantize(x: Tensor, fmt: int) -> tuple[Tensor, Tensor | None]:
    """x: (..., D) in the model dtype -> (stored values, scales (..., n_groups) in x's dtype)."""
    if fmt == FMT_MODEL:
        return x, None
    xf = x.float()
    if fmt == FMT_INT4:
        groups = xf.unflatten(-1, (-1, INT4_GROUP))
        scale = groups.abs().amax(-1, keepdim=True).clamp(min=1e-6) / 7.0
        q = torch.round(groups / scale).clamp(-8, 7).to(torch.int8).flatten(-2)
        half = q.shape[-1] // 2
        packed = (q[..., :half] & 0xF) | (q[..., half:] << 4)  # stays within int8: [-128, 127]
        return packed, scale.squeeze(-1).to(x.dtype)
    qmax = 127.0 if fmt == FMT_INT8 else 448.0
    scale = xf.abs().amax(-1, keepdim=True).clamp(min=1e-6) / qmax
    if fmt == FMT_INT8:
        return torch.round(xf / scale).clamp(-127, 127).to(torch.int8), scale.to(x.dtype)
    return (xf / scale).to(torch.float8_e4m3fn), scale.to(x.dtype)


def dequantize(stored: Tensor, scale: Tensor | None, fmt: int, dtype: torch.dtype) -> Tensor:
    if fmt == FMT_MODEL:
        return stored.to(dtype)
    if fmt == FMT_INT4:
        p = stored.to(torch.int16)
        q = torch.cat([(p << 12) >> 12, p >> 4], dim=-1).float()  # sign-extended low, high nibbles
        return (q.unflatten(-1, (-1, INT4_GROUP)) * scale.float()[..., None]).flatten(-2).to(dtype)
    return (stored.float() * scale.float()).to(dtype)


def attention_reference(q: Tensor, k: Tensor, v: Tensor, k_scale, v_scale, input_pos: Tensor, fmt: int) -> Tensor:
    """Plain-torch path (CPU, and the reference for the kernel): dequantize only the filled prefix
    and run SDPA with a (T, L) causal mask from input_pos. q: (B, Hq, T, D); cache (B, Hkv, S, *)."""
    filled = int(input_pos.max()) + 1  # a host read; free on CPU
    kd = dequantize(k[:, :, :filled], None if k_scale is None else k_scale[:, :, :filled], fmt, q.dtype)
    vd = dequantize(v[:, :, :filled], None if v_scale is None else v_scale[:, :, :filled], fmt, q.dtype)
    mask = torch.arange(filled, device=q.device)[None, :] <= input_pos[:, None]
    return F.scaled_dot_product_attention(q, kd, vd, attn_mask=mask, enable_gqa=True)


def decode_splits(configured: int, cache_slots: int) -> int:
    """Splits per KV head for a cache of `cache_slots` slots: the configured ones, fewer where a
    split would cover under MIN_SLOTS_PER_SPLIT slots, and at least 1."""
    return max(1, min(configured, cache_slots // MIN_SLOTS_PER_SPLIT))


# ----------------------------------------------------------------------------- Triton kernels

if triton is not None:

    @triton.jit
    def _load_halves(base, scale_base, offs_n, dh, stride_n, stride_sn,
                     FMT: tl.constexpr, GROUP: tl.constexpr, HALF: tl.constexpr, DOT_DTYPE: tl.constexpr):
        """A (BLOCK_N, D) tile of K or V as two bf16 (BLOCK_N, D/2) halves, dequantized in registers.
        offs_n are clamped in-bounds slots, so the loads need no mask (fp8 has no `other`)."""
        ptrs = base + offs_n[:, None] * stride_n + dh[None, :]
        if FMT == 3:
            packed = tl.load(ptrs).to(tl.int32)
            lo = ((packed << 28) >> 28).to(tl.float32)
            hi = (packed >> 4).to(tl.float32)
        else:
            lo = tl.load(ptrs).to(tl.float32)
            hi = tl.load(ptrs + HALF).to(tl.float32)
        if FMT == 3:  # per-32-dim scales; per-token scales (int8, fp8) are applied to scores and p instead
            sp = scale_base + offs_n[:, None] * stride_sn
            lo = lo * tl.load(sp + (dh // GROUP)[None, :]).to(tl.float32)
            hi = hi * tl.load(sp + ((dh + HALF) // GROUP)[None, :]).to(tl.float32)
        return lo.to(DOT_DTYPE), hi.to(DOT_DTYPE)

    @triton.jit
    def _attend_tiles(q_lo, q_hi, k_base, v_base, ks_base, vs_base, start, end, pos, dh, stride_kn, stride_sn,
                      qk_scale, FMT: tl.constexpr, GROUP: tl.constexpr, HALF: tl.constexpr, BLOCK_M: tl.constexpr,
                      BLOCK_N: tl.constexpr, DOT_DTYPE: tl.constexpr):
        """Online softmax of the query rows (q_lo, q_hi) over cache slots [start, end), row r seeing
        slots up to pos[r] -> (running max m, sum l, unnormalized acc_lo, acc_hi), all float32."""
        m_i = tl.full([BLOCK_M], -1e30, tl.float32)  # finite: a fully masked tile gives p = 0, not NaN
        l_i = tl.zeros([BLOCK_M], tl.float32)
        acc_lo = tl.zeros([BLOCK_M, HALF], tl.float32)
        acc_hi = tl.zeros([BLOCK_M, HALF], tl.float32)
        for n0 in range(start, end, BLOCK_N):
            offs_n = n0 + tl.arange(0, BLOCK_N)
            n_ok = offs_n < end
            slots = tl.minimum(offs_n, end - 1)  # tail: re-read the last slot; its score is masked to -inf
            k_lo, k_hi = _load_halves(k_base, ks_base, slots, dh, stride_kn, stride_sn, FMT, GROUP, HALF, DOT_DTYPE)
            s = tl.dot(q_lo, tl.trans(k_lo)) + tl.dot(q_hi, tl.trans(k_hi))
            if FMT == 1 or FMT == 2:
                s = s * tl.load(ks_base + slots * stride_sn).to(tl.float32)[None, :]
            s = tl.where(n_ok[None, :] & (offs_n[None, :] <= pos[:, None]), s * qk_scale, float("-inf"))
            m_new = tl.maximum(m_i, tl.max(s, 1))
            alpha = tl.exp2(m_i - m_new)
            p = tl.exp2(s - m_new[:, None])
            l_i = l_i * alpha + tl.sum(p, 1)
            v_lo, v_hi = _load_halves(v_base, vs_base, slots, dh, stride_kn, stride_sn, FMT, GROUP, HALF, DOT_DTYPE)
            if FMT == 1 or FMT == 2:
                p_dot = (p * tl.load(vs_base + slots * stride_sn).to(tl.float32)[None, :]).to(DOT_DTYPE)
            else:
                p_dot = p.to(DOT_DTYPE)
            acc_lo = acc_lo * alpha[:, None] + tl.dot(p_dot, v_lo)
            acc_hi = acc_hi * alpha[:, None] + tl.dot(p_dot, v_hi)
            m_i = m_new
        return m_i, l_i, acc_lo, acc_hi

    @triton.jit
    def _attention_kernel(Q, K, V, KS, VS, POS, OUT, PART_ACC, PART_LSE,
                          stride_qb, stride_qh, stride_qt,
                          stride_kb, stride_kh, stride_kn,
                          stride_sb, stride_sh, stride_sn,
                          stride_ob, stride_ot, stride_oh,
                          T, n_rows_total, sm_scale_log2,
                          HKV: tl.constexpr, G: tl.constexpr, D: tl.constexpr, FMT: tl.constexpr,
                          GROUP: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                          NUM_SPLITS: tl.constexpr, DOT: tl.constexpr):
        HALF: tl.constexpr = D // 2
        DOT_DTYPE: tl.constexpr = tl.bfloat16 if DOT == 0 else (tl.float16 if DOT == 1 else tl.float32)
        qk_scale = tl.cast(sm_scale_log2, tl.float32)  # under torch.compile a Python float arrives as fp64
        pid_m, pid_bh, split = tl.program_id(0), tl.program_id(1), tl.program_id(2)
        b, hkv = pid_bh // HKV, pid_bh % HKV
        rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
        row_ok = rows < T * G
        t, head = rows // G, hkv * G + rows % G
        pos = tl.load(POS + t, mask=row_ok, other=-1)
        filled = tl.max(pos, 0) + 1  # this block's rows see slots [0, filled): the prefix, no more
        chunk = tl.cdiv(tl.cdiv(filled, NUM_SPLITS), BLOCK_N) * BLOCK_N
        start = split * chunk
        end = tl.minimum(start + chunk, filled)

        dh = tl.arange(0, HALF)
        q_ptrs = Q + b * stride_qb + head[:, None] * stride_qh + t[:, None] * stride_qt + dh[None, :]
        q_lo = tl.load(q_ptrs, mask=row_ok[:, None], other=0.0).to(DOT_DTYPE)
        q_hi = tl.load(q_ptrs + HALF, mask=row_ok[:, None], other=0.0).to(DOT_DTYPE)
        k_base = K + b * stride_kb + hkv * stride_kh
        v_base = V + b * stride_kb + hkv * stride_kh
        ks_base = KS + b * stride_sb + hkv * stride_sh
        vs_base = VS + b * stride_sb + hkv * stride_sh

        m_i, l_i, acc_lo, acc_hi = _attend_tiles(q_lo, q_hi, k_base, v_base, ks_base, vs_base, start, end, pos, dh,
                                                  stride_kn, stride_sn, qk_scale, FMT, GROUP, HALF, BLOCK_M,
                                                  BLOCK_N, DOT_DTYPE)
        l_safe = tl.where(l_i == 0.0, 1.0, l_i)
        if NUM_SPLITS == 1:
            o_ptrs = OUT + b * stride_ob + t[:, None] * stride_ot + head[:, None] * stride_oh + dh[None, :]
            tl.store(o_ptrs, (acc_lo / l_safe[:, None]).to(OUT.dtype.element_ty), mask=row_ok[:, None])
            tl.store(o_ptrs + HALF, (acc_hi / l_safe[:, None]).to(OUT.dtype.element_ty), mask=row_ok[:, None])
        else:
            # Normalized partial output and its log2-sum-exp; _combine_kernel merges the splits.
            part_row = (split * n_rows_total) + pid_bh * (T * G) + rows
            tl.store(PART_LSE + part_row, m_i + tl.log2(l_i), mask=row_ok)  # -inf for an empty split
            a_ptrs = PART_ACC + part_row[:, None] * D + dh[None, :]
            tl.store(a_ptrs, acc_lo / l_safe[:, None], mask=row_ok[:, None])
            tl.store(a_ptrs + HALF, acc_hi / l_safe[:, None], mask=row_ok[:, None])

    @triton.jit
    def _combine_kernel(PART_ACC, PART_LSE, OUT, n_rows_total, T, stride_ob, stride_ot, stride_oh,
                        HKV: tl.constexpr, G: tl.constexpr, D: tl.constexpr, NUM_SPLITS: tl.constexpr):
        r = tl.program_id(0)
        s, d = tl.arange(0, NUM_SPLITS), tl.arange(0, D)
        lse = tl.load(PART_LSE + s * n_rows_total + r)
        w = tl.exp2(lse - tl.max(lse, 0))
        acc = tl.load(PART_ACC + (s[:, None] * n_rows_total + r) * D + d[None, :])
        out = tl.sum(acc * w[:, None], 0) / tl.sum(w, 0)
        bh, row = r // (T * G), r % (T * G)
        b, head, t = bh // HKV, (bh % HKV) * G + row % G, row // G
        tl.store(OUT + b * stride_ob + t * stride_ot + head * stride_oh + d, out.to(OUT.dtype.element_ty))

    @triton.jit
    def _prefetch_l2(ptr, nbytes):
        # A hint: the nbytes (a multiple of 16, > 0) at ptr into L2, one bulk prefetch (sm_90+);
        # every thread of the program asks the same, which L2 serves once.
        addr = ptr.to(tl.pointer_type(tl.int8)) + tl.zeros([1], tl.int64)
        tl.inline_asm_elementwise("cp.async.bulk.prefetch.L2.global [$1], $2;\n\tmov.u32 $0, 0;", "=r,l,r",
                                  [addr, tl.full([1], nbytes, tl.int32)], dtype=tl.int32, is_pure=False, pack=1)

    @triton.jit
    def _rope_halves(ptr, d, cos, sin_signed):
        # x[d] rotated by RoPE on Meta's interleaved pairs (2i, 2i + 1): x[d] cos_i + x[d ^ 1] sin_i,
        # the sine negative for even d. The partner comes from a second load (same lines, from L1),
        # not a register shuffle. float32, then rounded to x's dtype as the model's RoPE rounds.
        x = tl.load(ptr + d).to(tl.float32)
        partner = tl.load(ptr + (d ^ 1)).to(tl.float32)
        return (x * cos + partner * sin_signed).to(ptr.dtype.element_ty).to(tl.float32)

    @triton.jit
    def _rope_factors(FREQS, d):
        # cos and signed sin for dims d of this step's row of the RoPE table (D/2 (cos, sin) pairs).
        cos = tl.load(FREQS + (d // 2) * 2).to(tl.float32)
        sin = tl.load(FREQS + (d // 2) * 2 + 1).to(tl.float32)
        return cos, tl.where(d % 2 == 0, -sin, sin)

    @triton.jit
    def _decode_step_kernel(QKV, K, V, FREQS, POS, OUT, stride_qkv, stride_kb, stride_kh, stride_kn, sm_scale_log2,
                            HQ: tl.constexpr, HKV: tl.constexpr, D: tl.constexpr, BLOCK_M: tl.constexpr,
                            BLOCK_N: tl.constexpr, DOT: tl.constexpr, PDL: tl.constexpr,
                            KV_PREFETCH: tl.constexpr = False, RELEASE_LATE: tl.constexpr = False):
        # One decode token, model-dtype cache: RoPE on q and k, the cache write and attention in one
        # launch, where the unfused step spends three pointwise kernels before _attention_kernel
        # (about 3 us a layer on an H200: docs/performance.md). One program per (batch, KV head), for
        # its G query heads. QKV: the wqkv output (B, 1, (HQ + 2 HKV) D) rows; the new token's k and
        # v are used from registers, so the loop reads only the slots before pos. PDL: every input
        # may be the kernel before's output, so the wait comes first (KV_PREFETCH's hint aside: the
        # cache before pos and POS itself are older); the release lets the next kernel (wo's GEMV)
        # start loading its weights while this one runs on B * HKV programs (RELEASE_LATE: after
        # the loop over the cache).
        pid_bh = tl.program_id(0)
        b, hkv = pid_bh // HKV, pid_bh % HKV
        k_base = K + b * stride_kb + hkv * stride_kh
        v_base = V + b * stride_kb + hkv * stride_kh
        if KV_PREFETCH:
            prefix_bytes = tl.load(POS) * stride_kn * K.dtype.element_ty.primitive_bitwidth // 8
            if prefix_bytes > 0:
                _prefetch_l2(k_base, prefix_bytes)
                _prefetch_l2(v_base, prefix_bytes)
        if RELEASE_LATE:
            if PDL:
                tl.extra.cuda.gdc_wait()
        else:
            pdl.wait_then_release(PDL)
        HALF: tl.constexpr = D // 2
        G: tl.constexpr = HQ // HKV
        DOT_DTYPE: tl.constexpr = tl.bfloat16 if DOT == 0 else (tl.float16 if DOT == 1 else tl.float32)
        qk_scale = tl.cast(sm_scale_log2, tl.float32)
        pos = tl.load(POS)
        rows = tl.arange(0, BLOCK_M)
        row_ok = rows < G
        head = hkv * G + tl.minimum(rows, G - 1)  # padding rows (tl.dot wants 16) reread the last head
        dh = tl.arange(0, HALF)
        cos_lo, sin_lo = _rope_factors(FREQS, dh)
        cos_hi, sin_hi = _rope_factors(FREQS, dh + HALF)
        qkv = QKV + b * stride_qkv
        q_ptr = qkv + head[:, None] * D
        q_lo = _rope_halves(q_ptr, dh[None, :], cos_lo[None, :], sin_lo[None, :])
        q_hi = _rope_halves(q_ptr, dh[None, :] + HALF, cos_hi[None, :], sin_hi[None, :])
        k_lo = _rope_halves(qkv + (HQ + hkv) * D, dh, cos_lo, sin_lo)
        k_hi = _rope_halves(qkv + (HQ + hkv) * D, dh + HALF, cos_hi, sin_hi)
        v_ptr = qkv + (HQ + HKV + hkv) * D
        v_lo = tl.load(v_ptr + dh).to(tl.float32)
        v_hi = tl.load(v_ptr + dh + HALF).to(tl.float32)
        tl.store(k_base + pos * stride_kn + dh, k_lo.to(K.dtype.element_ty))
        tl.store(k_base + pos * stride_kn + dh + HALF, k_hi.to(K.dtype.element_ty))
        tl.store(v_base + pos * stride_kn + dh, v_lo.to(V.dtype.element_ty))
        tl.store(v_base + pos * stride_kn + dh + HALF, v_hi.to(V.dtype.element_ty))

        m_i, l_i, acc_lo, acc_hi = _attend_tiles(q_lo.to(DOT_DTYPE), q_hi.to(DOT_DTYPE), k_base, v_base, k_base,
                                                  v_base, 0, pos, tl.full([BLOCK_M], pos, tl.int32), dh,
                                                  stride_kn, 0, qk_scale, 0, D, HALF, BLOCK_M, BLOCK_N, DOT_DTYPE)
        if RELEASE_LATE and PDL:
            tl.extra.cuda.gdc_launch_dependents()
        # The new token itself, from registers.
        s_new = (tl.sum(q_lo * k_lo[None, :], 1) + tl.sum(q_hi * k_hi[None, :], 1)) * qk_scale
        m_new = tl.maximum(m_i, s_new)
        alpha = tl.exp2(m_i - m_new)
        p = tl.exp2(s_new - m_new)
        l_i = l_i * alpha + p
        acc_lo = acc_lo * alpha[:, None] + p[:, None] * v_lo[None, :]
        acc_hi = acc_hi * alpha[:, None] + p[:, None] * v_hi[None, :]

        out_ptrs = OUT + (b * HQ + head[:, None]) * D + dh[None, :]
        tl.store(out_ptrs, (acc_lo / l_i[:, None]).to(OUT.dtype.element_ty), mask=row_ok[:, None])
        tl.store(out_ptrs + HALF, (acc_hi / l_i[:, None]).to(OUT.dtype.element_ty), mask=row_ok[:, None])

    def dot_kind(dtype: torch.dtype) -> int:
        return DOT_BF16 if dtype == torch.bfloat16 and not INTERPRET else (DOT_FP16 if dtype == torch.float16 else DOT_FP32)

    # An opaque custom op: torch.compile (fullgraph too) calls it as one extern kernel and CUDA
    # graphs capture it; nothing traces into the kernel. (Compiled decode once ran at half the eager
    # speed at a 131072-token context; the cause was the cache write, not this op: see
    # llama/kernels/kv_caches.py and benchmarks/profile_decode_step.py.)
    @torch.library.custom_op("llama::prefix_attention", mutates_args=())
    def _prefix_attention(q: Tensor, k: Tensor, v: Tensor, k_scale: Tensor | None, v_scale: Tensor | None,
                          input_pos: Tensor, fmt: int, num_splits: int | None = None,
                          config: list[int] | None = None) -> Tensor:
        B, Hq, T, D = q.shape
        Hkv = k.shape[1]
        G = Hq // Hkv
        rows = T * G
        decode = rows <= DECODE_MAX_ROWS
        block_m, block_n, warps, stages, splits = config or (DECODE_CONFIGS[fmt] if decode else PREFILL_CONFIG)
        if num_splits:
            splits = num_splits
        elif not config:  # an explicit num_splits or config (the sweep's) is run as given
            splits = decode_splits(splits, k.shape[2])
        out = torch.empty(B, T, Hq, D, dtype=q.dtype, device=q.device)
        ks = k_scale if k_scale is not None else k  # unused when fmt == FMT_MODEL
        vs = v_scale if v_scale is not None else v
        n_rows_total = B * Hkv * rows
        part_acc = part_lse = torch.empty(1, device=q.device)  # unused when splits == 1 (never alias `out`)
        if splits > 1:
            part_acc = torch.empty(splits, n_rows_total, D, dtype=torch.float32, device=q.device)
            part_lse = torch.empty(splits, n_rows_total, dtype=torch.float32, device=q.device)
        group = INT4_GROUP if fmt == FMT_INT4 else D
        grid = (triton.cdiv(rows, block_m), B * Hkv, splits)
        _attention_kernel[grid](
            q, k, v, ks, vs, input_pos, out, part_acc, part_lse,
            q.stride(0), q.stride(1), q.stride(2),
            k.stride(0), k.stride(1), k.stride(2),
            ks.stride(0), ks.stride(1), ks.stride(2),
            out.stride(0), out.stride(1), out.stride(2),
            T, n_rows_total, math.log2(math.e) / math.sqrt(D),
            HKV=Hkv, G=G, D=D, FMT=fmt, GROUP=group, BLOCK_M=block_m, BLOCK_N=block_n, NUM_SPLITS=splits,
            DOT=dot_kind(q.dtype), num_warps=warps, num_stages=stages)
        if splits > 1:
            _combine_kernel[(n_rows_total,)](part_acc, part_lse, out, n_rows_total, T,
                                             out.stride(0), out.stride(1), out.stride(2),
                                             HKV=Hkv, G=G, D=D, NUM_SPLITS=splits, num_warps=4)
        return out

    @_prefix_attention.register_fake
    def _(q, k, v, k_scale, v_scale, input_pos, fmt, num_splits=None, config=None):
        B, Hq, T, D = q.shape
        return q.new_empty(B, T, Hq, D)

    def attention_kernel(q: Tensor, k: Tensor, v: Tensor, k_scale: Tensor | None, v_scale: Tensor | None,
                         input_pos: Tensor, fmt: int, num_splits: int | None = None,
                         config: list[int] | None = None) -> Tensor:
        """Triton path. q: (B, Hq, T, D) any strides with contiguous D; k/v: (B, Hkv, S, D or D/2)
        contiguous; scales (B, Hkv, S, n_groups) or None; input_pos: (T,) device tensor. Returns
        (B, Hq, T, D) as a transposed view of a contiguous (B, T, Hq, D) tensor (what wo wants).
        config overrides DECODE_CONFIGS[fmt] / PREFILL_CONFIG (the sweep uses it); num_splits overrides
        its splits. Either is run as given; without them a short cache gets fewer splits (decode_splits)."""
        return _prefix_attention(q, k, v, k_scale, v_scale, input_pos, fmt, num_splits, config).transpose(1, 2)


    # RoPE, the cache write and attention of one decode token in one kernel (_decode_step_kernel).
    # Mutates the cache buffers it is given (declared: compiled, inductor calls it on the buffers
    # themselves, no copy).
    @torch.library.custom_op("llama::decode_step_attention", mutates_args=("k_cache", "v_cache"))
    def _decode_step_attention(qkv: Tensor, k_cache: Tensor, v_cache: Tensor, freqs: Tensor, input_pos: Tensor,
                               n_heads: int, config: list[int] | None = None) -> Tensor:
        B, Hkv, _, D = k_cache.shape
        block_n, warps, stages = config or FUSED_DECODE_CONFIG
        out = torch.empty(B, 1, n_heads, D, dtype=qkv.dtype, device=qkv.device)
        block_m = max(16, triton.next_power_of_2(n_heads // Hkv))  # tl.dot's least M
        _decode_step_kernel[(B * Hkv,)](
            qkv, k_cache, v_cache, freqs, input_pos, out,
            qkv.stride(0), k_cache.stride(0), k_cache.stride(1), k_cache.stride(2), math.log2(math.e) / math.sqrt(D),
            HQ=n_heads, HKV=Hkv, D=D, BLOCK_M=block_m, BLOCK_N=block_n, DOT=dot_kind(qkv.dtype),
            num_warps=warps, num_stages=stages, **pdl.launch_args(qkv, "decode_step"),
            KV_PREFETCH=KV_PREFETCH and not INTERPRET and torch.cuda.get_device_capability(qkv.device)[0] >= 9,
            RELEASE_LATE=RELEASE_LATE)
        return out

    @_decode_step_attention.register_fake
    def _(qkv, k_cache, v_cache, freqs, input_pos, n_heads, config=None):
        return qkv.new_empty(qkv.shape[0], 1, n_heads, k_cache.shape[3])

    def decode_step_attention(qkv: Tensor, k_cache: Tensor, v_cache: Tensor, freqs_cis: Tensor, input_pos: Tensor,
                              n_heads: int, config: list[int] | None = None) -> Tensor:
        """One decode token: qkv (B, 1, (Hq + 2 Hkv) D), the wqkv output before RoPE; k/v_cache
        (B, Hkv, S, D) contiguous in qkv's dtype; freqs_cis (1, D/2, 2), the RoPE table's row at
        input_pos (1,). Writes the rotated k and v at input_pos and returns attention over slots
        0..input_pos as (B, 1, Hq * D). config (BLOCK_N, num_warps, num_stages) overrides
        FUSED_DECODE_CONFIG (the sweep uses it)."""
        out = _decode_step_attention(qkv.contiguous(), k_cache, v_cache, freqs_cis.contiguous(), input_pos, n_heads,
                                     config)
        return out.view(qkv.shape[0], 1, -1)


else:

    def attention_kernel(*args, **kwargs) -> Tensor:
        raise RuntimeError("the fused KV-cache attention needs triton (pip install triton), or run on CPU")
