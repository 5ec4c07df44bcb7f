"""Weight-only GEMV linears (llama/kernels/gemv.py): quantization error, the CPU fallback, and the
Triton kernels against the dequantized reference.

The kernel tests need CUDA, or Triton's interpreter on CPU:
    TRITON_INTERPRET=1 pytest tests/test_kernels_gemv.py -q      (with triton installed)
"""
import copy
import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from llama.kernels import gemv, pdl
from llama.kernels.gemv import (Int4Linear, RowwiseLinear, dequantize_int4, quantize_int4, quantize_linears,
                                quantize_rowwise)
from llama.model import ARCHITECTURES, RMSNorm, Transformer, TransformerBlock, rms_norm

INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"
KERNEL_DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
needs_kernels = pytest.mark.skipif(gemv.triton is None or not (torch.cuda.is_available() or INTERPRET),
                                   reason="Triton GEMV needs CUDA, or TRITON_INTERPRET=1 with triton installed")

# Relative error of the quantized weight itself, for Gaussian weights: what each technique costs.
WEIGHT_ERROR = {"int8": 0.02, "float8": 0.05, "int4-32": 0.12, "int4-128": 0.15}


def rel_err(a, b):
    return ((a.float() - b.float()).norm() / b.float().norm()).item()


def random_weight(n, k, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, k, generator=g) * 0.02).to(torch.bfloat16)


@pytest.mark.parametrize("scheme", ["int8", "float8"])
def test_rowwise_quantization_error(scheme):
    w = random_weight(96, 256)
    q, scale = quantize_rowwise(w, torch.int8 if scheme == "int8" else torch.float8_e4m3fn)
    assert q.shape == w.shape and scale.shape == (96,)
    err = rel_err(gemv.dequantize_rowwise(q, scale, torch.float32), w)
    assert 0 < err < WEIGHT_ERROR[scheme]


@pytest.mark.parametrize("group", [32, 128])
def test_int4_packing_and_error(group):
    w = random_weight(64, 512, seed=1)
    packed, scale, zero = quantize_int4(w, group)
    assert packed.dtype == torch.uint8 and packed.shape == (64, 256) and scale.shape == (64, 512 // group)
    deq = dequantize_int4(packed, scale, zero)
    assert 0 < rel_err(deq, w) < WEIGHT_ERROR[f"int4-{group}"]
    # Low nibble is input 2j, high nibble 2j + 1: unpacking by hand gives the same codes.
    codes = torch.stack([packed & 0xF, packed >> 4], dim=-1).view(64, 512)
    assert torch.equal(deq[:, :group].float(), (codes[:, :group] * scale[:, :1].float() + zero[:, :1].float()).to(deq.dtype).float())


def test_int4_rejects_bad_group():
    with pytest.raises(ValueError, match="group_size 48"):
        quantize_int4(random_weight(8, 64), 48)


@pytest.mark.parametrize("make", [lambda w: RowwiseLinear(w, torch.int8), lambda w: RowwiseLinear(w, torch.float8_e4m3fn),
                                  lambda w: Int4Linear(w, 64)], ids=["int8", "float8", "int4-64"])
def test_cpu_fallback_is_the_dequantized_linear(make):
    lin = make(random_weight(48, 128, seed=2))
    x = torch.randn(2, 5, 128).to(torch.bfloat16)
    assert torch.equal(lin(x), F.linear(x, lin.dequantize()))


def test_quantize_linears_on_the_model():
    torch.manual_seed(0)
    model = Transformer(ARCHITECTURES["tiny"]).to(torch.bfloat16)
    tokens = torch.randint(0, ARCHITECTURES["tiny"].vocab_size, (1, 16))
    ref = model(tokens)
    quantize_linears(model, "int8", filter_fn=lambda m, fqn: fqn != "output")
    assert isinstance(model.layers[0].attention.wqkv, RowwiseLinear)
    assert isinstance(model.layers[3].feed_forward.w2, RowwiseLinear)
    assert type(model.output) is torch.nn.Linear
    assert rel_err(model(tokens), ref) < 0.05
    with pytest.raises(ValueError, match="scheme must be"):
        quantize_linears(model, "int3")


def test_scheme_none_keeps_weights():
    w = random_weight(16, 64)
    lin = RowwiseLinear(w, None)
    x = torch.randn(3, 64).to(torch.bfloat16)
    assert lin.scale is None and torch.equal(lin(x), F.linear(x, w))


# ----------------------------------------------------------------------------- the kernels

def _poisoned_out(monkeypatch):
    """Make torch.empty in the kernel wrappers return NaN-filled tensors, so an unwritten output fails."""
    real_empty = torch.empty

    def nan_empty(*args, **kwargs):
        t = real_empty(*args, **kwargs)
        return t.fill_(float("nan")) if t.is_floating_point() else t
    monkeypatch.setattr(gemv.torch, "empty", nan_empty)


@needs_kernels
@pytest.mark.parametrize("prefetch", [0, 1])
@pytest.mark.parametrize("wdtype", [torch.int8, torch.float8_e4m3fn, torch.bfloat16], ids=["int8", "float8", "bf16"])
@pytest.mark.parametrize("rows,n,k,config", [(1, 200, 512, [16, 128, 4]), (3, 64, 300, [4, 256, 4]), (1, 96, 1024, None),
                                             (2, 40, 1000, [8, 128, 4])])
def test_rowwise_kernel_matches_reference(monkeypatch, wdtype, rows, n, k, config, prefetch):
    # K = 300 and 1000 are not multiples of BLOCK_K: the last tile is partly masked. K = 512 and 1000
    # take 4 and 8 tiles, so the prefetching loop carries tiles across several iterations.
    torch.manual_seed(n + k)
    w = random_weight(n, k, seed=k)
    x = torch.randn(rows, k).to(torch.bfloat16)
    if wdtype == torch.bfloat16:
        q, scale, deq = w, None, w
    else:
        q, scale = quantize_rowwise(w, wdtype)
        deq = gemv.dequantize_rowwise(q, scale, torch.bfloat16)
    ref = x.float() @ deq.float().T
    _poisoned_out(monkeypatch)
    kind = "bfloat16" if wdtype == torch.bfloat16 else str(wdtype).removeprefix("torch.")
    if config is None:  # the module-level entry's fourth field turns it on
        monkeypatch.setitem(gemv.GEMV_CONFIGS, kind, gemv.GEMV_CONFIGS[kind][:3] + (prefetch,))
    dev = KERNEL_DEVICE
    y = gemv.rowwise_gemv(x.to(dev), q.to(dev), None if scale is None else scale.to(dev),
                          config=None if config is None else config + [prefetch])
    assert y.shape == (rows, n) and y.dtype == torch.bfloat16 and not y.isnan().any()
    assert rel_err(y.cpu(), ref) < 1e-2  # bf16 output rounding is ~4e-3


def _only_int4_kernel(monkeypatch, kernel):
    """Take the other int4 kernel away, so a test of one kernel fails if the other one ran."""
    monkeypatch.setattr(gemv, "_int4_gemv_v2_kernel" if kernel == 1 else "_int4_gemv_kernel", None)


@needs_kernels
@pytest.mark.parametrize("kernel,prefetch", [(1, 0), (2, 0), (2, 1)], ids=["v1", "v2", "v2-prefetch"])
@pytest.mark.parametrize("group", [32, 128])
@pytest.mark.parametrize("rows,n,k,config", [(1, 200, 512, [16, 256, 4]), (2, 72, 768, [8, 512, 2]), (1, 40, 1024, None), (1, 24, 384, None)])
def test_int4_kernel_matches_reference(monkeypatch, kernel, prefetch, group, rows, n, k, config):
    torch.manual_seed(n + k + group)
    w = random_weight(n, k, seed=k + group)
    packed, scale, zero = quantize_int4(w, group)
    x = torch.randn(rows, k).to(torch.bfloat16)
    ref = x.float() @ dequantize_int4(packed, scale, zero).float().T
    _poisoned_out(monkeypatch)
    _only_int4_kernel(monkeypatch, kernel)
    if config is None:  # the module-level choice picks the kernel and prefetch
        monkeypatch.setitem(gemv.GEMV_CONFIGS, "int4", gemv.GEMV_CONFIGS["int4"][:3] + (kernel, prefetch))
    dev = KERNEL_DEVICE
    y = gemv.int4_gemv(x.to(dev), packed.to(dev), scale.to(dev), zero.to(dev),
                       config=None if config is None else config + [kernel, prefetch])
    assert y.shape == (rows, n) and y.dtype == torch.bfloat16 and not y.isnan().any()
    assert rel_err(y.cpu(), ref) < 1e-2


@needs_kernels
@pytest.mark.parametrize("group", [8, 16])
def test_int4_groups_below_32_take_v1_when_v2_is_asked_for(monkeypatch, group):
    # v2 reads a group's words 4 at a time (32 inputs): smaller groups fall back to v1.
    packed, scale, zero = quantize_int4(random_weight(24, 256, seed=group), group)
    x = torch.randn(1, 256).to(torch.bfloat16)
    ref = x.float() @ dequantize_int4(packed, scale, zero).float().T
    _poisoned_out(monkeypatch)
    _only_int4_kernel(monkeypatch, 1)
    dev = KERNEL_DEVICE
    y = gemv.int4_gemv(x.to(dev), packed.to(dev), scale.to(dev), zero.to(dev), config=[8, 128, 2, 2, 1])
    assert rel_err(y.cpu(), ref) < 1e-2


def exact_dequantize_int4(packed, scale, zero):
    """q * scale + zero in float32, not rounded to the model dtype as dequantize_int4 is: what the kernels compute."""
    n = packed.shape[0]
    codes = torch.stack([packed & 0xF, packed >> 4], dim=-1).view(n, scale.shape[1], -1).float()
    return (codes * scale.float()[..., None] + zero.float()[..., None]).view(n, -1)


@needs_kernels
@pytest.mark.parametrize("prefetch", [0, 1])
@pytest.mark.parametrize("group", [32, 64, 128, 256])
@pytest.mark.parametrize("rows,n,k,config", [(1, 40, 512, [16, 256, 4, 2]), (2, 70, 768, [8, 512, 2, 2]),
                                             (3, 24, 1280, [4, 4096, 1, 2]), (4, 36, 256, [8, 128, 4, 2])])
def test_int4_v2_kernel_is_exact_in_float32(monkeypatch, group, rows, n, k, config, prefetch):
    # float32 x and output, against the float32 dequantized weight: only summation order differs, so
    # a wrong nibble, group or scale shows as O(1) error. x spans 1e-3..1e3 (the rescaling by powers
    # of two must be exact across magnitudes). N is not a multiple of BLOCK_N; K = 768 and 1280 are
    # not multiples of the requested BLOCK_K, which shrinks to a power of two dividing K.
    torch.manual_seed(n + k + group)
    packed, scale, zero = quantize_int4(random_weight(n, k, seed=k + group), group)
    x = torch.randn(rows, k) * 10 ** torch.empty(rows, k).uniform_(-3, 3)
    ref = x.double() @ exact_dequantize_int4(packed, scale, zero).double().T
    _poisoned_out(monkeypatch)
    _only_int4_kernel(monkeypatch, 2)
    dev = KERNEL_DEVICE
    y = gemv.int4_gemv(x.to(dev), packed.to(dev), scale.to(dev), zero.to(dev), config=config + [prefetch])
    assert y.shape == (rows, n) and y.dtype == torch.float32
    assert rel_err(y.cpu(), ref) < 1e-5


def _only_rowwise_kernel(monkeypatch, kernel):
    """Take the other rowwise kernel away, so a test of one kernel fails if the other one ran."""
    monkeypatch.setattr(gemv, "_words_gemv_kernel" if kernel == 1 else "_rowwise_gemv_kernel", None)


@needs_kernels
@pytest.mark.parametrize("wdtype", [torch.int8, torch.float8_e4m3fn, torch.bfloat16], ids=["int8", "float8", "bf16"])
@pytest.mark.parametrize("prefetch", [0, 1])
@pytest.mark.parametrize("rows,n,k,config", [(1, 40, 512, [16, 128, 4]), (2, 70, 1024, [8, 512, 2]),
                                             (3, 24, 1000, [4, 4096, 1]), (4, 36, 4096, [32, 4096, 8])])
def test_word_kernel_is_exact_in_float32(monkeypatch, wdtype, rows, n, k, config, prefetch):
    # As the int4 v2 test: float32 x spanning 1e-3..1e3 (int8: the powers-of-two rescaling and the
    # +128 bias must be exact across magnitudes; float8: each byte to the float32 it stands for,
    # sign, subnormals and all; bf16: each half word) against the float64 product with the
    # dequantized weight.
    # N is not a multiple of BLOCK_N; K = 1000 is not a multiple of the requested BLOCK_K, which
    # shrinks to the largest power of two dividing K (8); K = 512 takes 4 tiles, so the prefetching
    # loop carries tiles across iterations; BLOCK_K = K = 4096 is one tile.
    torch.manual_seed(n + k)
    if wdtype == torch.bfloat16:  # weights as they are: no scale
        q, scale = random_weight(n, k, seed=k), None
    else:
        q, scale = quantize_rowwise(random_weight(n, k, seed=k), wdtype)
    if wdtype == torch.float8_e4m3fn:  # every byte but the two NaNs, so all of e4m3 is decoded once
        codes = torch.arange(256, dtype=torch.uint8).view(torch.float8_e4m3fn)
        codes = codes[~codes.float().isnan()]
        q.view(-1)[:codes.numel()] = codes
    x = torch.randn(rows, k) * 10 ** torch.empty(rows, k).uniform_(-3, 3)
    ref = x.double() @ (q.double() * (1 if scale is None else scale.double()[:, None])).T
    _poisoned_out(monkeypatch)
    _only_rowwise_kernel(monkeypatch, 2)
    dev = KERNEL_DEVICE
    y = gemv.rowwise_gemv(x.to(dev), q.to(dev), None if scale is None else scale.to(dev), config=config + [prefetch, 2])
    assert y.shape == (rows, n) and y.dtype == torch.float32
    assert rel_err(y.cpu(), ref) < 1e-5


def _rowwise_weight(n, k, wdtype, seed):
    """(qweight, scale, the float64 weight they stand for); bf16 weights have no scale."""
    w = random_weight(n, k, seed=seed)
    if wdtype == torch.bfloat16:
        return w, None, w.double()
    q, scale = quantize_rowwise(w, wdtype)
    return q, scale, q.double() * scale.double()[:, None]


@needs_kernels
@pytest.mark.parametrize("wdtype", [torch.int8, torch.float8_e4m3fn, torch.bfloat16], ids=["int8", "float8", "bf16"])
def test_word_kernel_from_gemv_configs_and_fallback_to_v1(monkeypatch, wdtype):
    # The entry's fifth field picks v2 for the model's calls (config=None); rows that can't be read
    # as int32 words (K not a whole number of words, or not 4-byte aligned) run v1 instead.
    dev = KERNEL_DEVICE
    monkeypatch.setitem(gemv.GEMV_CONFIGS, gemv._config_key(wdtype), (8, 128, 4, 1, 2))
    gemv_of = lambda x, q, scale: gemv.rowwise_gemv(x.to(dev), q.to(dev), None if scale is None else scale.to(dev)).cpu()
    x = torch.randn(2, 64)
    q, scale, w = _rowwise_weight(24, 64, wdtype, seed=5)
    with monkeypatch.context() as m:
        _only_rowwise_kernel(m, 2)
        assert rel_err(gemv_of(x, q, scale), x.double() @ w.T) < 1e-5
    _only_rowwise_kernel(monkeypatch, 1)
    shifted = torch.empty(q.numel() + 1, dtype=wdtype, device=dev)[1:].view(q.shape)
    shifted.copy_(q)
    assert rel_err(gemv_of(x, shifted, scale), x.double() @ w.T) < 1e-5
    k = 65 if wdtype == torch.bfloat16 else 66  # not a whole number of words
    q, scale, w = _rowwise_weight(24, k, wdtype, seed=6)
    x = torch.randn(1, k)
    assert rel_err(gemv_of(x, q, scale), x.double() @ w.T) < 1e-5


@needs_kernels
def test_rowwise_v2_weights():
    w = random_weight(8, 64).to(torch.float16).to(KERNEL_DEVICE)
    with pytest.raises(ValueError, match="kernel must be 1, or 2 for int8, float8_e4m3fn and bfloat16 weights; not 2 for torch.float16"):
        gemv.rowwise_gemv(torch.randn(1, 64).to(w), w, None, config=[8, 64, 4, 0, 2])


@pytest.mark.skipif(gemv.triton is None or not torch.cuda.is_available() or INTERPRET,
                    reason="the PTX conversion of e4m3 runs on a GPU only")
def test_float8_ptx_conversion_equals_tritons():
    # The word kernel converts e4m3 bytes with inline PTX where the GPU has it (sm_89+), and with
    # Triton's own conversion elsewhere: both exact, so the same bits out.
    if torch.cuda.get_device_capability() < (8, 9):
        pytest.skip("no e4m3 conversion in PTX before sm_89")
    torch.manual_seed(0)
    q, scale = (t.cuda() for t in quantize_rowwise(random_weight(64, 1024), torch.float8_e4m3fn))
    x = torch.randn(2, 1024, device="cuda")
    ptx = gemv.rowwise_gemv(x, q, scale, config=[8, 512, 2, 0, 2])
    with pytest.MonkeyPatch.context() as m:
        m.setattr(gemv, "_has_e4m3_convert", lambda x: False)
        plain = gemv.rowwise_gemv(x, q, scale, config=[8, 512, 2, 0, 2])
    assert torch.equal(ptx, plain)


@needs_kernels
@pytest.mark.parametrize("kind", ["int8", "float8", "bf16", "int4", "int8-v2", "float8-v2", "bf16-v2"])
def test_prefetch_is_the_same_math(kind):
    # Prefetching only moves loads earlier: the same operations in the same order, so the same bits.
    # K = 1000 (rowwise, last tile partial) and 1024 (int4, int8 v2) over 128-wide tiles: 8 iterations.
    torch.manual_seed(3)
    dev = KERNEL_DEVICE
    x = torch.randn(2, 1000 if kind in ("int8", "float8", "bf16") else 1024).to(torch.bfloat16).to(dev)
    w = random_weight(24, x.shape[1], seed=3)
    if kind == "int4":
        q = [t.to(dev) for t in quantize_int4(w, 64)]
        off, on = (gemv.int4_gemv(x, *q, config=[8, 128, 4, 2, p]) for p in (0, 1))
    elif kind == "bf16-v2":
        q = [w.to(dev), None]
        off, on = (gemv.rowwise_gemv(x, *q, config=[8, 128, 4, p, 2]) for p in (0, 1))
    elif kind.endswith("-v2"):
        q = [t.to(dev) for t in quantize_rowwise(w, gemv.SCHEMES[kind.removesuffix("-v2")])]
        off, on = (gemv.rowwise_gemv(x, *q, config=[8, 128, 4, p, 2]) for p in (0, 1))
    else:
        q = [w.to(dev), None] if kind == "bf16" else [t.to(dev) for t in quantize_rowwise(w, gemv.SCHEMES[kind])]
        off, on = (gemv.rowwise_gemv(x, *q, config=[8, 128, 4, p]) for p in (0, 1))
    assert torch.equal(on, off)


@needs_kernels
@pytest.mark.parametrize("kind", ["int8", "int4", "float8", "float8-v2"])
@pytest.mark.parametrize("rows,n,k", [(1, 40, 2048), (3, 24, 1536)])
def test_split_k_adds_up_to_one_split(monkeypatch, kind, rows, n, k):
    # The sixth config field splits K over programs writing fp32 partial sums; for each kernel that
    # splits (int8 v2, the rowwise kernel and v2 on float8, int4 v2) they must add up to the unsplit result.
    # float32 x over 1e-3..1e3, so a split summing the wrong tiles, or a prefetch reading past its
    # split's end, shows. K = 2048 over 256-input tiles: 8 splits; K = 1536: 6 tiles, so 2 splits
    # (each split whole tiles).
    torch.manual_seed(n + k)
    x = (torch.randn(rows, k) * 10 ** torch.empty(rows, k).uniform_(-3, 3)).to(KERNEL_DEVICE)
    w = random_weight(n, k, seed=k)
    dev = KERNEL_DEVICE
    splits = []
    real_k_splits = gemv._k_splits
    monkeypatch.setattr(gemv, "_k_splits", lambda *a: splits.append(real_k_splits(*a)) or splits[-1])
    if kind == "int4":
        q = [t.to(dev) for t in quantize_int4(w, 64)]
        call = lambda prefetch, split: gemv.int4_gemv(x, *q, config=[8, 256, 4, 2, prefetch, split])
    else:  # int8: the v2 kernel; float8: the rowwise one; float8-v2: the word kernel
        q = [t.to(dev) for t in quantize_rowwise(w, gemv.SCHEMES[kind.removesuffix("-v2")])]
        kernel = 1 if kind == "float8" else 2
        call = lambda prefetch, split: gemv.rowwise_gemv(x, *q, config=[8, 256, 4, prefetch, kernel, split])
    for prefetch in (0, 1):
        whole, split = call(prefetch, 0), call(prefetch, 1)
        assert split.shape == whole.shape == (rows, n) and split.dtype == torch.float32
        assert rel_err(split.cpu(), whole.cpu()) < 1e-6
    assert splits == [8 if k == 2048 else 2] * 2


@needs_kernels
def test_split_k_from_gemv_configs_keeps_block_n(monkeypatch):
    # As the model calls it (config=None): with the split field set, a matrix with few blocks of
    # rows is split along K at full BLOCK_N; without it, BLOCK_N narrows (MIN_PROGRAMS).
    seen = []
    real_k_splits = gemv._k_splits
    monkeypatch.setattr(gemv, "_k_splits",
                        lambda n, words, block_n, *rest: seen.append(block_n) or real_k_splits(n, words, block_n, *rest))
    monkeypatch.setitem(gemv.GEMV_CONFIGS, "int8", (32, 256, 4, 0, 2, 1))
    q = [t.to(KERNEL_DEVICE) for t in quantize_rowwise(random_weight(64, 1024), torch.int8)]
    x = torch.randn(1, 1024).to(torch.bfloat16).to(KERNEL_DEVICE)
    y = gemv.rowwise_gemv(x, *q)
    assert seen == [32] and y.dtype == torch.bfloat16
    assert rel_err(y.cpu(), x.cpu().float() @ gemv.dequantize_rowwise(*[t.cpu() for t in q], torch.float32).T) < 1e-2


@needs_kernels
def test_int4_v2_falls_back_to_v1_where_words_do_not_fit(monkeypatch):
    # Groups of 4 split a 32-bit word, and packed bytes at an odd offset can't be read as int32.
    _only_int4_kernel(monkeypatch, 1)
    x = torch.randn(2, 64)
    dev = KERNEL_DEVICE
    for group, offset in [(4, 0), (32, 1)]:
        packed, scale, zero = quantize_int4(random_weight(24, 64, seed=group), group)
        shifted = torch.empty(packed.numel() + offset, dtype=torch.uint8, device=dev)[offset:].view(packed.shape)
        shifted.copy_(packed)
        y = gemv.int4_gemv(x.to(dev), shifted, scale.to(dev), zero.to(dev), config=[8, 64, 4, 2])
        assert rel_err(y.cpu(), x @ exact_dequantize_int4(packed, scale, zero).T) < 1e-5


@needs_kernels
def test_int4_rejects_unknown_kernel():
    packed, scale, zero = quantize_int4(random_weight(8, 64), 32)
    with pytest.raises(ValueError, match="kernel must be 1 or 2"):
        gemv.int4_gemv(torch.randn(1, 64).to(KERNEL_DEVICE), packed.to(KERNEL_DEVICE), scale.to(KERNEL_DEVICE),
                       zero.to(KERNEL_DEVICE), config=[8, 64, 4, 3])


@pytest.mark.parametrize("spec,cls", [("int8wo-triton", RowwiseLinear), ("int4wo-triton-64", Int4Linear),
                                      ("float8wo-triton", RowwiseLinear)])
def test_registry_entries(spec, cls):
    from llama import techniques
    torch.manual_seed(0)
    model = Transformer(ARCHITECTURES["tiny"]).to(torch.bfloat16)
    tokens = torch.randint(0, ARCHITECTURES["tiny"].vocab_size, (1, 8))
    ref = model(tokens)
    techniques.apply(model, spec, "cpu", torch.bfloat16)
    assert isinstance(model.layers[0].feed_forward.w13, cls) and isinstance(model.output, cls)
    assert rel_err(model(tokens), ref) < 0.15


def test_dequantize_in_row_chunks_matches_whole(monkeypatch):
    """Dequantization runs DEQUANT_ROWS rows at a time (bounded float32 temporaries); the chunk
    edges must not show: the result equals the one-shot formula, also for a ragged last chunk."""
    torch.manual_seed(0)
    w = torch.randn(30, 64, dtype=torch.bfloat16)
    packed, scale, zero = quantize_int4(w, 32)
    q8, s8 = gemv.quantize_rowwise(w, torch.int8)
    monkeypatch.setattr(gemv, "DEQUANT_ROWS", 7)
    q = torch.stack([packed & 0xF, packed >> 4], dim=-1).view(30, -1).float()
    whole = (q.view(30, -1, 32) * scale.float()[..., None] + zero.float()[..., None]).view(30, -1).to(torch.bfloat16)
    assert torch.equal(dequantize_int4(packed, scale, zero), whole)
    assert torch.equal(gemv.dequantize_rowwise(q8, s8, torch.bfloat16), (q8.float() * s8[:, None]).to(torch.bfloat16))


def test_inductor_tuning_off_only_where_our_gemvs_do_every_matmul():
    # gemv.inductor_settings: timing-based tuning off for a model whose blocks' linears are all ours,
    # unless of a kind in TUNED_GLUE_KINDS (int4); nn.Linear or torchao's weights keep it.
    import dataclasses
    from llama.model import ARCHITECTURES, Transformer
    args = dataclasses.replace(ARCHITECTURES["tiny"], n_layers=1)
    # Inductor's kernels on PDL where all the GEMVs launch with it (pdl.KERNELS).
    off, pdl_on = {"coordinate_descent_tuning": False}, {"triton.enable_pdl": True}
    cases = (("int8", None, off, off | pdl_on), ("none", None, off | pdl_on, off | pdl_on), ("int4", None, {}, pdl_on),
             ("int8", lambda m, fqn: "w2" not in fqn, {}, {}), (None, None, {}, {}))
    for scheme, filter_fn, by_default, all_on_pdl in cases:
        model = Transformer(args).to(torch.bfloat16)  # "none": the bf16 weights on our kernel
        if scheme:
            gemv.quantize_linears(model, scheme, 32, filter_fn=filter_fn)
        with pdl.only(pdl.DEFAULT):
            assert gemv.inductor_settings(model) == by_default, (scheme, filter_fn)
        with pdl.only(pdl.ALL):
            assert gemv.inductor_settings(model) == all_on_pdl, (scheme, filter_fn)


def test_gemv_config_fills_left_out_fields(monkeypatch):
    # One reader of config tuples for the wrappers and the sweep: each kind's field order, and the
    # defaults of fields left out (an int4 config of three fields inherits the module entry's rest).
    monkeypatch.setitem(gemv.GEMV_CONFIGS, "int4", (32, 512, 2, 2, 1, 1))
    assert gemv.gemv_config("int4", [8, 256, 4]) == (8, 256, 4, 2, 1, 1)
    assert gemv.gemv_config("int4", [8, 256, 4, 1]) == (8, 256, 4, 1, 0, 0)
    assert gemv.gemv_config("int4") == (32, 512, 2, 2, 1, 1)
    assert gemv.gemv_config("int8", [8, 256, 4]) == gemv.GemvConfig(8, 256, 4, kernel=1, prefetch=0, split=0)
    assert gemv.gemv_config("int8", [8, 256, 4, 1, 2, 1]) == gemv.GemvConfig(8, 256, 4, kernel=2, prefetch=1, split=1)
    # config_entry writes a GemvConfig back in the kind's order: the entry it gives reads as it.
    assert gemv.config_entry("int4", gemv.GemvConfig(8, 256, 4, kernel=2, prefetch=1, split=0)) == (8, 256, 4, 2, 1, 0)
    # The split field is the program budget in MIN_PROGRAMS: Llama-3.1-8B's wqkv (768 blocks of 8 rows)
    # splits in two only with 2, wo (512 blocks) in two with 1 and in four with 2.
    assert gemv.gemv_config("int8", [8, 256, 4, 0, 2, 2]).split == 2
    assert gemv.config_entry("int8", gemv.gemv_config("int8", [8, 256, 4, 0, 2, 2]))[5] == 2
    if gemv.triton is not None:
        assert [gemv._k_splits(n, 2048, 8, 256, budget) for n in (6144, 4096) for budget in (1, 2)] == [1, 2, 2, 4]
    assert gemv.config_entry("int8", gemv.GemvConfig(8, 256, 4, kernel=2, prefetch=1, split=0)) == (8, 256, 4, 1, 2, 0)
    for kind in gemv.GEMV_CONFIGS:
        assert gemv.gemv_config(kind, gemv.config_entry(kind, gemv.gemv_config(kind))) == gemv.gemv_config(kind)



@pytest.mark.parametrize("kind", ["int8", "int4"])
def test_modules_pass_their_gemv_config_into_the_op(monkeypatch, kind):
    # The modules pass their GEMV_CONFIGS entry into the op as an argument, so torch.compile's graph
    # holds it: a changed entry recompiles, and keys inductor's on-disk cache apart. Read inside the
    # op, a process with another entry was handed the graph compiled with the first one (sixth H200
    # session). The op is replaced by a recorder here; narrow=True keeps the narrowing of config=None.
    monkeypatch.setattr(gemv, "triton_gemv_available", lambda x: True)
    monkeypatch.setattr(gemv, "GEMV_CONFIGS", dict(gemv.GEMV_CONFIGS))
    calls = []
    op = "int4_gemv" if kind == "int4" else "rowwise_gemv"
    # (config, narrow, swiglu) and the norm
    monkeypatch.setattr(gemv, op, lambda x, *args, **kwargs: calls.append((args[-3:], kwargs)) or x)
    linear = Int4Linear(random_weight(16, 256), 64) if kind == "int4" else RowwiseLinear(random_weight(16, 256))
    entries = [(8, 128, 4, 2, 0, 0), (4, 256, 2, 2, 1, 1)] if kind == "int4" else [(8, 128, 4, 0, 2, 0), (4, 256, 2, 1, 1, 1)]
    for entry in entries:
        gemv.GEMV_CONFIGS[kind] = entry
        linear(torch.randn(1, 256).to(torch.bfloat16))
    assert calls == [((list(e), True, False), dict(norm_weight=None, eps=0.0)) for e in entries]
    # A linear that took a norm in (quantize_linears' fuse_norms) passes its weight and eps along.
    g = torch.randn(256).to(torch.bfloat16)
    linear.take_norm(g, 1e-5)
    linear(torch.randn(1, 256).to(torch.bfloat16))
    assert calls[-1][1]["norm_weight"] is linear.norm_weight and torch.equal(linear.norm_weight, g)
    assert calls[-1][1]["eps"] == 1e-5


# ----------------------------------------------------------------------------- SwiGLU in the w13 GEMV

def test_swiglu_row_order():
    # Groups of 4 gate rows, then the 4 up rows they pair with; the torch epilogue undoes it.
    assert gemv.swiglu_row_order(16).tolist() == [0, 1, 2, 3, 8, 9, 10, 11, 4, 5, 6, 7, 12, 13, 14, 15]
    y = torch.randn(3, 40)
    gate, up = y.chunk(2, dim=-1)
    assert torch.equal(gemv.swiglu_from_rows(y[:, gemv.swiglu_row_order(40)]), F.silu(gate) * up)
    with pytest.raises(ValueError, match="multiple of 8, not 12"):
        gemv.swiglu_row_order(12)


@pytest.mark.parametrize("scheme", ["none", "int8", "float8", "int4"])
def test_swiglu_fusion_on_the_model(scheme):
    # quantize_linears fuses each FeedForward's w13 (only it), and on the torch path (CPU, prefill)
    # the fused model gives the unfused one's logits bit for bit: the same dequantized weights, rows
    # reordered, and silu(gate) * up computed as FeedForward computes it. dequantize() and the bytes
    # stored are those of the unfused w13.
    torch.manual_seed(0)
    model = Transformer(ARCHITECTURES["tiny"]).to(torch.bfloat16)
    unfused = copy.deepcopy(model)
    tokens = torch.randint(0, ARCHITECTURES["tiny"].vocab_size, (1, 16))
    quantize_linears(model, scheme, group_size=64)
    quantize_linears(unfused, scheme, group_size=64, swiglu=False)
    fused = {n for n, m in model.named_modules() if getattr(m, "swiglu", False)}
    assert fused == {f"layers.{i}.feed_forward.w13" for i in range(len(model.layers))}
    assert torch.equal(model(tokens), unfused(tokens))
    w13, unfused_w13 = model.layers[0].feed_forward.w13, unfused.layers[0].feed_forward.w13
    assert torch.equal(w13.dequantize(), unfused_w13.dequantize())
    from llama import techniques
    assert techniques.model_size_bytes(model) == techniques.model_size_bytes(unfused)


def test_swiglu_needs_pairs_of_four():
    # intermediate_size % 4 != 0: groups of 4 gate and 4 up rows don't tile w13, so it stays unfused.
    torch.manual_seed(0)
    model = Transformer(dataclasses.replace(ARCHITECTURES["tiny"], intermediate_size=770)).to(torch.bfloat16)
    quantize_linears(model, "int8")
    assert not model.layers[0].feed_forward.w13.swiglu and model(torch.zeros(1, 4, dtype=torch.long)).isfinite().all()


def _swiglu_reference(x, w_stored):
    """silu(gate) * up in float64 from a fused w13's weight in stored order, through the original
    row order (independent of swiglu_from_rows)."""
    y = (x.double() @ w_stored.double().T)[:, gemv.swiglu_row_order(w_stored.shape[0]).argsort()]
    gate, up = y.chunk(2, dim=-1)
    return F.silu(gate) * up


def _swiglu_linear(kind, n, k, seed=0):
    """(fused module, its float64 weight in stored order, the GEMV_CONFIGS key) for a kernel kind."""
    w = random_weight(n, k, seed=seed)
    if kind.startswith("int4"):
        lin = Int4Linear(w, 64, swiglu=True)
        return lin, exact_dequantize_int4(lin.qweight, lin.scale, lin.zero).double(), "int4"
    wdtype = {"int8": torch.int8, "float8": torch.float8_e4m3fn, "bf16": None}[kind.removesuffix("-v2")]
    lin = RowwiseLinear(w, wdtype, swiglu=True)
    stored = lin.qweight.double() * (1 if lin.scale is None else lin.scale.double()[:, None])
    return lin, stored, "bfloat16" if wdtype is None else gemv._config_key(wdtype)


def _spy_swiglu_from_rows(monkeypatch):
    """Record the torch epilogue's calls: the fused kernels must not need it, the fallbacks must."""
    calls = []
    real = gemv.swiglu_from_rows
    monkeypatch.setattr(gemv, "swiglu_from_rows", lambda y: calls.append(y.shape) or real(y))
    return calls


# Each kernel kind and the GEMV_CONFIGS entry that runs it: rowwise v1 ([..., prefetch, 1]), the
# word kernel ([..., prefetch, 2]), int4 v1 and v2 ([..., kernel, prefetch]).
SWIGLU_KINDS = {"int8": (16, 128, 4, 1, 1), "float8": (8, 128, 4, 0, 1), "bf16": (16, 128, 4, 0, 1),
                "int8-v2": (16, 128, 4, 1, 2), "float8-v2": (8, 128, 4, 0, 2), "bf16-v2": (16, 128, 4, 1, 2),
                "int4-v1": (16, 128, 4, 1, 0), "int4-v2": (16, 128, 4, 2, 1)}


@needs_kernels
@pytest.mark.parametrize("kind", list(SWIGLU_KINDS))
def test_swiglu_epilogue_in_each_kernel(monkeypatch, kind):
    # The fused module on the kernel path (its GEMV_CONFIGS entry, as the model calls it): the
    # kernel's epilogue writes silu(gate) * up, (rows, N // 2), nothing left to torch. float32 x:
    # against the float64 reference, only summation order and sigmoid differ; a wrong pairing of
    # rows shows as O(1) error. N = 56 rows, 7 groups: with BLOCK_N 16 the last block is half past N.
    # bf16 x: against the unfused module (rows in their original order) on the same kernel, then
    # FeedForward's F.silu(gate) * up in torch: the same gate and up sums, rounded to bf16 as the
    # epilogue rounds them; the epilogue then rounds once where torch rounds silu(gate) too, and
    # Triton's interpreter rounds to bf16 toward zero (GPUs: to nearest): an ulp apart, ~4e-3.
    if kind == "int4-v1":
        _only_int4_kernel(monkeypatch, 1)
    elif kind == "int4-v2":
        _only_int4_kernel(monkeypatch, 2)
    else:
        _only_rowwise_kernel(monkeypatch, 2 if kind.endswith("-v2") else 1)
    torch.manual_seed(0)
    lin, w_stored, key = _swiglu_linear(kind, 56, 256)
    monkeypatch.setitem(gemv.GEMV_CONFIGS, key, SWIGLU_KINDS[kind])
    monkeypatch.setattr(gemv, "MIN_PROGRAMS", 1)  # no narrowing, no split-K for this small matrix
    unfused = copy.deepcopy(lin)  # the same quantized rows, back in their original order
    unfused.swiglu = False
    for name, t in unfused.named_buffers():
        if t is not None:
            setattr(unfused, name, gemv._original_rows(t))
    monkeypatch.setattr(gemv, "triton_gemv_available", lambda x: True)
    calls = _spy_swiglu_from_rows(monkeypatch)
    _poisoned_out(monkeypatch)
    lin.to(KERNEL_DEVICE), unfused.to(KERNEL_DEVICE)
    x = torch.randn(2, 256).to(KERNEL_DEVICE)
    y = lin(x).cpu()
    assert y.shape == (2, 28) and y.dtype == torch.float32 and not y.isnan().any()
    assert rel_err(y, _swiglu_reference(x.cpu(), w_stored)) < 1e-5
    x = x.to(torch.bfloat16)
    y = lin(x).cpu()
    gate, up = unfused(x).cpu().chunk(2, dim=-1)
    assert y.shape == (2, 28) and y.dtype == torch.bfloat16
    assert rel_err(y, F.silu(gate) * up) < 1e-2
    assert calls == []


@needs_kernels
@pytest.mark.parametrize("kind,config", [("int8-v2", [4, 128, 4, 0, 2]), ("int8", [4, 128, 4, 0, 1]),
                                         ("int4-v2", [4, 128, 4, 2]), ("int4-v1", [4, 128, 4, 1]),
                                         ("int8-v2", [8, 128, 4, 0, 2, 1]), ("int4-v2", [8, 128, 4, 2, 0, 1]),
                                         ("int8-v2", None)], ids=["int8-v2-bn4", "int8-bn4", "int4-v2-bn4",
                                                                  "int4-v1-bn4", "int8-v2-split", "int4-v2-split",
                                                                  "int8-v2-narrowed"])
def test_swiglu_falls_back_to_torch(monkeypatch, kind, config):
    # Launch shapes the epilogue can't take: BLOCK_N 4 (half a group of rows), split-K (partial
    # sums), or the GEMV_CONFIGS entry narrowed for a small matrix (config None, BLOCK_N 8 -> 4):
    # the kernel writes all N rows and swiglu_from_rows does SwiGLU; the same result.
    torch.manual_seed(1)
    lin, w_stored, key = _swiglu_linear(kind, 48, 2048, seed=1)
    monkeypatch.setitem(gemv.GEMV_CONFIGS, key, (8, 128, 4, 0, 2))
    calls = _spy_swiglu_from_rows(monkeypatch)
    x = torch.randn(3, 2048)
    dev = KERNEL_DEVICE
    if kind.startswith("int4"):
        y = gemv.int4_gemv(x.to(dev), lin.qweight.to(dev), lin.scale.to(dev), lin.zero.to(dev), config, False, True)
    else:
        y = gemv.rowwise_gemv(x.to(dev), lin.qweight.to(dev), lin.scale.to(dev), config, False, True)
    assert calls == [(3, 48)] and y.shape == (3, 24)
    assert rel_err(y.cpu(), _swiglu_reference(x, w_stored)) < 1e-5


@needs_kernels
@pytest.mark.parametrize("scheme", ["int8", "int4"])  # the word kernel (as none and float8) and int4 v2
def test_swiglu_fusion_on_the_model_with_kernels(monkeypatch, scheme):
    # As decode runs it (a few rows of x, GEMV_CONFIGS' entries): each layer's fused w13 on its GEMV
    # kernel and epilogue, logits within bf16 rounding of the unfused model's on the same kernel
    # (FeedForward's eager silu rounds once more than the epilogue). Only w13 is swapped, in one
    # layer: Triton's interpreter takes minutes for all linears of the tiny model.
    torch.manual_seed(0)
    model = Transformer(dataclasses.replace(ARCHITECTURES["tiny"], n_layers=1)).to(torch.bfloat16)
    unfused = copy.deepcopy(model)
    quantize_linears(model, scheme, group_size=64, filter_fn=lambda m, fqn: fqn.endswith("w13"))
    quantize_linears(unfused, scheme, group_size=64, filter_fn=lambda m, fqn: fqn.endswith("w13"), swiglu=False)
    calls = _spy_swiglu_from_rows(monkeypatch)
    logits, ref = _decode_on_kernels(monkeypatch, model, unfused)
    assert calls == [] and rel_err(logits, ref) < 1e-2


def _decode_on_kernels(monkeypatch, model, unfused):
    """Both models' logits for two tokens with their linears on the GEMV kernels (CUDA, or Triton's
    interpreter), whole launch shapes: no narrowing, no split-K for the tiny model's linears."""
    tokens = torch.randint(0, model.config.vocab_size, (1, 2))
    monkeypatch.setattr(gemv, "triton_gemv_available", lambda x: x.numel() // x.shape[-1] <= gemv.MAX_GEMV_ROWS)
    monkeypatch.setattr(gemv, "MIN_PROGRAMS", 1)
    model.to(KERNEL_DEVICE), unfused.to(KERNEL_DEVICE)
    with torch.no_grad():
        return model(tokens.to(KERNEL_DEVICE)).cpu(), unfused(tokens.to(KERNEL_DEVICE)).cpu()


# ----------------------------------------------------------------------------- RMSNorm in the GEMV

def _random_norm_weights(model, seed=0):
    """RMSNorm weights away from 1 (a new model's are all ones, which would hide a missing weight)."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, RMSNorm):
            m.weight.data = (1 + 0.5 * torch.randn(m.weight.shape, generator=g)).to(m.weight.dtype)
    return model


def _norm_pairs(model):
    """{norm's fqn: fqn of the linear it moves into}, from the modules' norm_into."""
    pairs = {}
    for name, module in model.named_modules():
        prefix = f"{name}." if name else ""
        for norm, linear in getattr(module, "norm_into", {}).items():
            pairs[prefix + norm] = prefix + linear
    return pairs


@pytest.mark.parametrize("scheme", ["none", "int8", "float8", "int4"])
def test_norm_fusion_on_the_model(scheme):
    # quantize_linears moves each RMSNorm of norm_into (attention_norm -> wqkv, ffn_norm -> w13, norm
    # -> output) into its linear: the norm an nn.Identity, the linear holding the norm's weight and
    # eps. On the torch path (CPU, prefill) the linear runs llama.model.rms_norm itself: the same
    # logits as the unfused model, bit for bit, and the same bytes stored.
    torch.manual_seed(0)
    model = _random_norm_weights(Transformer(ARCHITECTURES["tiny"]).to(torch.bfloat16))
    norms = {n: (m.weight.detach().clone(), m.eps) for n, m in model.named_modules() if isinstance(m, RMSNorm)}
    pairs = _norm_pairs(model)
    layers = len(model.layers)
    assert pairs == {"norm": "output", **{f"layers.{i}.{n}": f"layers.{i}.{lin}" for i in range(layers)
                                          for n, lin in TransformerBlock.norm_into.items()}}
    assert set(pairs) == set(norms)
    unfused = copy.deepcopy(model)
    quantize_linears(model, scheme, group_size=64, fuse_norms=True)
    quantize_linears(unfused, scheme, group_size=64, fuse_norms=False)
    modules, unfused_modules = dict(model.named_modules()), dict(unfused.named_modules())
    for norm, linear in pairs.items():
        assert type(modules[norm]) is torch.nn.Identity and isinstance(unfused_modules[norm], RMSNorm)
        assert torch.equal(modules[linear].norm_weight, norms[norm][0]) and modules[linear].norm_eps == norms[norm][1]
        assert unfused_modules[linear].norm_weight is None
    others = [m for n, m in modules.items() if isinstance(m, gemv._GemvLinear) and n not in pairs.values()]
    assert len(others) == 2 * layers and all(m.norm_weight is None for m in others)  # wo, w2
    tokens = torch.randint(0, ARCHITECTURES["tiny"].vocab_size, (1, 16))
    assert torch.equal(model(tokens), unfused(tokens))
    from llama import techniques
    assert techniques.model_size_bytes(model) == techniques.model_size_bytes(unfused)


@pytest.mark.parametrize("scheme", ["none", "int8", "float8", "int4"])
def test_norms_move_by_default_only_where_that_decoded_faster(scheme):
    model = Transformer(ARCHITECTURES["tiny"])
    quantize_linears(model, scheme, group_size=64)
    moved = type(model.norm) is torch.nn.Identity
    assert moved == (scheme in gemv.FUSE_NORMS_BY_DEFAULT) and (moved == (model.output.norm_weight is not None))


def test_norm_stays_where_its_linear_is_not_ours():
    # A norm moves only into a linear that is now one of ours: not into an nn.Linear left alone (a
    # tied output head, a filter), and not twice.
    torch.manual_seed(0)
    model = _random_norm_weights(Transformer(ARCHITECTURES["tiny"]).to(torch.bfloat16))
    ref = model(torch.arange(8)[None])
    quantize_linears(model, "int8", filter_fn=lambda m, fqn: fqn not in ("output", "layers.1.attention.wqkv"),
                     fuse_norms=True)
    assert isinstance(model.norm, RMSNorm) and type(model.output) is torch.nn.Linear
    assert isinstance(model.layers[1].attention_norm, RMSNorm) and type(model.layers[1].ffn_norm) is torch.nn.Identity
    assert type(model.layers[0].attention_norm) is torch.nn.Identity
    assert rel_err(model(torch.arange(8)[None]), ref) < 0.05
    w13 = model.layers[0].feed_forward.w13
    quantize_linears(model, "int8", fuse_norms=True)  # swaps only what is left (output, layers.1's wqkv)
    assert type(model.norm) is torch.nn.Identity and model.output.norm_weight is not None
    assert model.layers[0].feed_forward.w13 is w13


def _round_as_kernels(t, dtype):
    """float32 t rounded to dtype as the kernels round it: Triton's interpreter truncates float32 to
    bfloat16 (GPUs round to nearest, as torch does); to float16 it rounds to nearest too."""
    if INTERPRET and dtype == torch.bfloat16:
        return (t.float().view(torch.int32) & -0x10000).view(torch.float32).to(dtype)
    return t.to(dtype)


def _normed_as_kernels(x, g, eps):
    """rms_norm(x, g, eps) in x's dtype with its two roundings done as the kernels do them
    (_round_as_kernels): rms_norm's own bits on GPUs, and under the interpreter for float16."""
    xf = x.float()
    r = torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)
    return _round_as_kernels(_round_as_kernels(xf * r, x.dtype).float() * g.float(), x.dtype)


def _spy_torch_norm(monkeypatch):
    """Record the norms gemv runs in torch (the ops' normed_input, the modules' torch path): the
    NORM kernels must need none."""
    calls = []
    real = gemv.rms_norm
    monkeypatch.setattr(gemv, "rms_norm", lambda *a: calls.append(a[0].shape) or real(*a))
    return calls


def _norm_kernel_call(kind, q, config, prefetch, split):
    """The op on the NORM kernel of `kind` (the word kernel for int8, float8 and bf16; int4 v2)."""
    if kind == "int4":
        return lambda x, **norm: gemv.int4_gemv(x, *q, config=config + [2, prefetch, split], **norm)
    return lambda x, **norm: gemv.rowwise_gemv(x, *q, config=config + [prefetch, 2, split], **norm)


def _quantized(kind, w, dev):
    if kind == "int4":
        return [t.to(dev) for t in quantize_int4(w, 64)]
    if kind == "bf16":
        return [w.to(dev), None]
    return [t.to(dev) for t in quantize_rowwise(w, gemv.SCHEMES[kind])]


@needs_kernels
@pytest.mark.parametrize("split", [0, 1])
@pytest.mark.parametrize("prefetch", [0, 1])
@pytest.mark.parametrize("kind", ["int8", "float8", "bf16", "int4"])
def test_norm_prologue_matches_torch_norm(monkeypatch, kind, prefetch, split):
    # The op with norm_weight (the kernel's prologue) against the same op on x normalized in torch
    # (normed_input). float32 x and weight: no rounding to bf16 anywhere, so only the order of x^2's
    # sum differs: a wrong r (e.g. summed over a split's part of the row only), a missing eps or g
    # shows as O(1) error. Rows at scales 1, 100 and 0.01 (there eps = 0.25 dominates the mean
    # square). K = 1024 over 128-input tiles: 8 tiles, split-K into 8; the x^2 pre-pass 256 wide, so
    # it takes 4 tiles (NORM_TILE; K up to its 2048 takes one: test_norm_prologue_rounds_as_rms_norm).
    _only_int4_kernel(monkeypatch, 2) if kind == "int4" else _only_rowwise_kernel(monkeypatch, 2)
    monkeypatch.setattr(gemv, "NORM_TILE", 256)
    splits = []
    real_k_splits = gemv._k_splits
    monkeypatch.setattr(gemv, "_k_splits", lambda *a: splits.append(real_k_splits(*a)) or splits[-1])
    normed = _spy_torch_norm(monkeypatch)
    torch.manual_seed(0)
    rows, n, k, eps, dev = 3, 24, 1024, 0.25, KERNEL_DEVICE
    q = _quantized(kind, random_weight(n, k, seed=5), dev)
    call = _norm_kernel_call(kind, q, [8, 128, 4], prefetch, split)
    x = torch.randn(rows, k) * torch.tensor([[1.0], [100.0], [0.01]])
    g = 1 + 0.5 * torch.randn(k)
    y = call(x.to(dev), norm_weight=g.to(dev), eps=eps).cpu()
    ref = call(rms_norm(x, g, eps).to(dev)).cpu()
    assert y.shape == (rows, n) and y.dtype == torch.float32
    assert max(rel_err(a, b) for a, b in zip(y, ref)) < 1e-5
    assert splits == ([8, 8] if split else []) and normed == []
    # bf16: the kernel rounds x * r and then its product with g to bf16, as rms_norm does; against
    # the op on x normalized with those roundings (Triton's interpreter truncates to bf16, so rms_norm's
    # own bits differ by an ulp: 1e-2 there), and on rms_norm's (an ulp from the interpreter's).
    xb, gb = x.to(torch.bfloat16), g.to(torch.bfloat16)
    y = call(xb.to(dev), norm_weight=gb.to(dev), eps=eps).cpu()
    ref = call(_normed_as_kernels(xb, gb, eps).to(dev)).cpu()
    assert y.dtype == torch.bfloat16 and max(rel_err(a, b) for a, b in zip(y, ref)) < 1e-3
    ref = call(rms_norm(xb, gb, eps).to(dev)).cpu()
    assert max(rel_err(a, b) for a, b in zip(y, ref)) < 2e-2


@needs_kernels
@pytest.mark.parametrize("split", [0, 1])
@pytest.mark.parametrize("prefetch", [0, 1])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["fp16", "bf16"])
@pytest.mark.parametrize("kind", ["bf16", "int4"])
def test_norm_prologue_rounds_as_rms_norm(monkeypatch, kind, dtype, prefetch, split):
    # The normalized x itself, bit for bit: weights 15 * identity (64 x 384: the outputs see the first
    # 64 inputs, r all 384, in one pre-pass tile of 512, partly masked; bf16 weights on the word
    # kernel, whose prologue int8 and float8 share;
    # int4 v2 with exact scale 1 and zero 0), so each output is 15 * xn of one input, exact in
    # float32, then rounded once to x's dtype. Against rms_norm with
    # both its roundings (x * r, then times g): dropping either rounding, the weight or eps changes
    # a quarter of the outputs or more. float16 rounds to nearest here as on GPUs; bfloat16 as the
    # kernels round it (_round_as_kernels). r's float32 sum may differ by an ulp from torch's: on a
    # GPU (approximate rsqrt) a few outputs may differ, under the interpreter none do.
    _only_int4_kernel(monkeypatch, 2) if kind == "int4" else _only_rowwise_kernel(monkeypatch, 2)
    torch.manual_seed(1)
    n, k, eps, dev = 64, 384, 0.25, KERNEL_DEVICE
    w = (15 * torch.eye(n, k)).to(torch.bfloat16)
    q = [t.to(dev) for t in quantize_int4(w, 32)] if kind == "int4" else [w.to(dev), None]
    if kind == "int4":
        assert torch.equal(exact_dequantize_int4(*[t.cpu() for t in q]), w.float())
    x = (torch.randn(2, k) * torch.tensor([[1.0], [0.3]])).to(dtype)
    g = (1 + 0.5 * torch.randn(k)).to(dtype)
    y = _norm_kernel_call(kind, q, [8, 64, 4], prefetch, split)(x.to(dev), norm_weight=g.to(dev), eps=eps).cpu()
    xn = _normed_as_kernels(x, g, eps)
    if not INTERPRET or dtype == torch.float16:
        assert torch.equal(xn, rms_norm(x, g, eps))  # rms_norm's own bits
    # The output's rounding: the kernel's store, or with split-K torch's sum of the float32 partials.
    want = 15 * xn[:, :n].float()
    want = want.to(dtype) if split else _round_as_kernels(want, dtype)
    mismatched = (y != want).float().mean().item()
    assert y.dtype == dtype and (mismatched == 0 if INTERPRET else mismatched < 0.02), mismatched


@needs_kernels
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("kind", ["int8", "float8", "bf16", "int4"])
def test_norm_in_torch_before_the_fallback_kernels(monkeypatch, kind, dtype):
    # The rowwise kernel (v1) and int4 v1 have no prologue: the op normalizes x in torch first
    # (normed_input), so the result is the op's on x normalized in torch, bit for bit, and the
    # module's torch path (rms_norm, then F.linear on the weight dequantized to bf16, as the modules
    # store it) within that weight's rounding.
    _only_int4_kernel(monkeypatch, 1) if kind == "int4" else _only_rowwise_kernel(monkeypatch, 1)
    torch.manual_seed(2)
    n, k, eps, dev = 24, 512, 0.25, KERNEL_DEVICE
    w = random_weight(n, k, seed=2)
    lin = Int4Linear(w, 64) if kind == "int4" else RowwiseLinear(w, None if kind == "bf16" else gemv.SCHEMES[kind])
    x = (torch.randn(2, k) * torch.tensor([[1.0], [0.01]])).to(dtype)
    g = (1 + 0.5 * torch.randn(k)).to(dtype)
    lin.take_norm(g, eps)
    q = [lin.qweight, lin.scale, lin.zero] if kind == "int4" else [lin.qweight, lin.scale]
    q = [None if t is None else t.to(dev) for t in q]
    if kind == "int4":
        call = lambda x, **norm: gemv.int4_gemv(x, *q, config=[8, 128, 4, 1], **norm)
    else:
        call = lambda x, **norm: gemv.rowwise_gemv(x, *q, config=[8, 128, 4, 0, 1], **norm)
    y = call(x.to(dev), norm_weight=g.to(dev), eps=eps).cpu()
    assert torch.equal(y, call(rms_norm(x.to(dev), g.to(dev), eps)).cpu())  # normalized on the device, as the op does
    torch_path = lin(x.unsqueeze(0))[0]  # CPU: the module's torch path
    assert y.dtype == torch_path.dtype == dtype
    assert rel_err(y, torch_path) < (2e-3 if dtype == torch.float32 else 1e-2)


@needs_kernels
@pytest.mark.parametrize("scheme", ["int8", "int4"])  # the word kernel (as none and float8) and int4 v2
def test_norm_fusion_on_the_model_with_kernels(monkeypatch, scheme):
    # As decode runs it (a few rows of x, GEMV_CONFIGS' entries): wqkv, w13 and the head normalize x
    # in their kernels' prologue (nothing in torch); logits within bf16 rounding of the unfused
    # model's on the same kernels. One layer, a vocabulary of 256, only the linears that take a norm
    # swapped: Triton's interpreter takes minutes for all linears of the tiny model.
    torch.manual_seed(0)
    args = dataclasses.replace(ARCHITECTURES["tiny"], n_layers=1, vocab_size=256)
    model = _random_norm_weights(Transformer(args).to(torch.bfloat16))
    unfused = copy.deepcopy(model)
    takes_norm = lambda m, fqn: fqn in ("output", "layers.0.attention.wqkv", "layers.0.feed_forward.w13")  # noqa: E731
    quantize_linears(model, scheme, group_size=64, filter_fn=takes_norm, fuse_norms=True)
    quantize_linears(unfused, scheme, group_size=64, filter_fn=takes_norm, fuse_norms=False)
    assert all(type(m) is torch.nn.Identity for m in (model.norm, model.layers[0].attention_norm, model.layers[0].ffn_norm))
    normed = _spy_torch_norm(monkeypatch)
    logits, ref = _decode_on_kernels(monkeypatch, model, unfused)
    assert normed == [] and rel_err(logits, ref) < 1e-2


TRACE = r"""
import torch
from llama.kernels import gemv, pdl
gemv.triton_gemv_available = lambda x: True
graphs = []
def capture(gm, inputs):  # dynamo's graph, traced with fake tensors; returns zeros of the outputs' shapes
    graphs.append(gm)
    outs = [(o.meta["example_value"].shape, o.meta["example_value"].dtype) for o in list(gm.graph.nodes)[-1].args[0]]
    return lambda *args: [torch.zeros(s, dtype=d) for s, d in outs]
w = (torch.randn(64, 256) * 0.02).to(torch.bfloat16)
for lin in (gemv.RowwiseLinear(w, torch.int8, swiglu=True), gemv.RowwiseLinear(w, None), gemv.Int4Linear(w, 64)):
    lin.take_norm(torch.randn(256).to(torch.bfloat16), 1e-5)
    torch._dynamo.reset()
    y = torch.compile(lin, fullgraph=True, backend=capture)(torch.randn(1, 256).to(torch.bfloat16))
    ops = [n for n in graphs[-1].graph.nodes if n.op == "call_function" and "llama" in str(n.target)]
    assert len(ops) == 1 and ops[0].kwargs["eps"] == 1e-5 and ops[0].kwargs["norm_weight"].op == "placeholder", ops
    print(tuple(y.shape), y.dtype)
"""


@pytest.mark.skipif(gemv.triton is None, reason="needs triton")
def test_compiled_module_takes_the_norm_into_the_op():
    # torch.compile(fullgraph=True) traces a linear with a norm into one call of its custom op, with
    # the norm's weight and eps as arguments (the op's fake run included). A subprocess without
    # Triton's interpreter (conftest sets it), which fake tracing can't take; nothing is launched.
    root = Path(__file__).resolve().parents[1]
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = str(root)
    out = subprocess.run([sys.executable, "-c", TRACE], env=env, cwd=root, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split("\n")[:3] == ["(1, 32) torch.bfloat16", "(1, 64) torch.bfloat16", "(1, 64) torch.bfloat16"]


@pytest.mark.skipif(gemv.triton is None or not torch.cuda.is_available() or INTERPRET
                    or torch.cuda.get_device_capability() < (9, 0), reason="PDL needs CUDA, sm_90+")
@pytest.mark.parametrize("scheme", ["none", "int8", "float8", "int4"])
def test_pdl_chain_in_a_cuda_graph_matches_serial(scheme):
    # Each GEMV reads the output of the kernel before it (a GEMV, or torch's residual add). With PDL
    # (llama/kernels/pdl.py) a kernel starts while the one before finishes, so a read before the
    # wait shows here as a result unlike the serial launches', or unlike itself from replay to replay.
    torch.manual_seed(0)
    dim = 2048
    lins = []
    for i in range(12):
        w = (torch.randn(dim, dim) * 0.02).to(torch.bfloat16).cuda()
        lin = Int4Linear(w, 128) if scheme == "int4" else RowwiseLinear(w, gemv.SCHEMES[scheme])
        if i % 3 == 0:  # the norm prologue reads x too
            lin.take_norm((1 + 0.1 * torch.randn(dim)).to(torch.bfloat16).cuda(), 1e-5)
        lins.append(lin.cuda())

    def chain(x):
        for i, lin in enumerate(lins):
            y = lin(x)
            x = x + y if i % 2 else y
        return x

    x = torch.randn(1, dim, dtype=torch.bfloat16, device="cuda")
    with pdl.serial():
        expected = chain(x)
    with pdl.only(pdl.ALL):
        assert pdl.launch_args(x, gemv._config_key(lins[0].qweight.dtype))["PDL"]
        chain(x)  # compile with PDL before capture
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            out = chain(x)
    for _ in range(20):
        graph.replay()
        torch.cuda.synchronize()
        assert torch.equal(out, expected)


def test_pdl_only_on_sm90_cuda_for_the_kernels_named():
    from types import SimpleNamespace
    on = {"PDL": True, "launch_pdl": True}
    assert set(pdl.GEMV_KINDS) == set(gemv.GEMV_CONFIGS)  # the GEMV ops name their kernel by config key
    with pdl.only(pdl.ALL):
        assert pdl.launch_args(torch.zeros(1), "int4") == {"PDL": False}  # CPU
    cuda_tensor = SimpleNamespace(is_cuda=True, device=torch.device("cuda", 0))
    capability = [(9, 0)]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(torch.cuda, "get_device_capability", lambda device=None: capability[0])
        with pdl.only({"int4", "decode_step"}):
            assert pdl.launch_args(cuda_tensor, "int4") == on and pdl.launch_args(cuda_tensor, "decode_step") == on
            assert pdl.launch_args(cuda_tensor, "int8") == {"PDL": False}
            with pytest.raises(RuntimeError), pdl.serial():
                assert pdl.launch_args(cuda_tensor, "int4") == {"PDL": False}
                raise RuntimeError  # the setting comes back on the way out, also here
            assert pdl.launch_args(cuda_tensor, "int4") == on
            capability[0] = (8, 0)  # A100: no PDL
            assert pdl.launch_args(cuda_tensor, "int4") == {"PDL": False}
    with pytest.raises(ValueError, match="unknown PDL kernel"):
        pdl.launch_args(cuda_tensor, "int3")
    with pytest.raises(ValueError, match="unknown PDL kernels"):
        pdl.only({"int3"}).__enter__()


def test_pdl_kernels_from_the_environment():
    assert pdl.DEFAULT <= pdl.ALL and pdl._from_environment(None) == set(pdl.DEFAULT)
    assert pdl._from_environment("0") == set() and pdl._from_environment("all") == set(pdl.ALL)
    assert pdl._from_environment(" int4, decode_step ") == {"int4", "decode_step"}
    with pytest.raises(ValueError, match=r"LLAMA_PDL='int4,int3' names unknown kernels \['int3'\]; give 0, all"):
        pdl._from_environment("int4,int3")

