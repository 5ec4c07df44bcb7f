"""Llama transformer in the style of gpt-fast's model.py: small, flat, hackable.

One registry, ARCHITECTURES, holds every shape we benchmark, keyed by its Hugging Face
repo name. Weights use gpt-fast's layout with two fusions that save kernel launches in
decode: `attention.wqkv` (q, k, v stacked on the output dim) and `feed_forward.w13`
(gate, up stacked). RoPE is applied to interleaved pairs (Meta's layout); HF checkpoints
are permuted into it on conversion (llama/checkpoint.py).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from llama.kernels import decode_attention


@dataclass(frozen=True)
class ModelArgs:
    dim: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    vocab_size: int
    intermediate_size: int
    max_seq_len: int
    norm_eps: float = 1e-5
    rope_base: float = 10000.0
    # llama3 RoPE scaling: {factor, low_freq_factor, high_freq_factor, original_max_position_embeddings}
    rope_scaling: Optional[dict] = field(default=None, hash=False, compare=True)
    tie_embeddings: bool = False
    tokenizer: str = "sentencepiece"  # "sentencepiece" (Llama 2) or "tiktoken" (Llama 3)

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_heads

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ModelArgs":
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


_L31_SCALING = dict(factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0, original_max_position_embeddings=8192)
_L32_SCALING = dict(_L31_SCALING, factor=32.0)
_LLAMA2 = dict(vocab_size=32000, max_seq_len=4096, norm_eps=1e-5, rope_base=10000.0, tokenizer="sentencepiece")
_LLAMA3 = dict(vocab_size=128256, max_seq_len=8192, norm_eps=1e-5, rope_base=500000.0, tokenizer="tiktoken")
_LLAMA31 = dict(_LLAMA3, max_seq_len=131072, rope_scaling=_L31_SCALING)

ARCHITECTURES: dict[str, ModelArgs] = {
    "meta-llama/Llama-2-7b-hf": ModelArgs(dim=4096, n_layers=32, n_heads=32, n_kv_heads=32, intermediate_size=11008, **_LLAMA2),
    "meta-llama/Llama-2-13b-hf": ModelArgs(dim=5120, n_layers=40, n_heads=40, n_kv_heads=40, intermediate_size=13824, **_LLAMA2),
    "meta-llama/Llama-2-70b-hf": ModelArgs(dim=8192, n_layers=80, n_heads=64, n_kv_heads=8, intermediate_size=28672, **_LLAMA2),
    "meta-llama/Meta-Llama-3-8B": ModelArgs(dim=4096, n_layers=32, n_heads=32, n_kv_heads=8, intermediate_size=14336, **_LLAMA3),
    "meta-llama/Meta-Llama-3-70B": ModelArgs(dim=8192, n_layers=80, n_heads=64, n_kv_heads=8, intermediate_size=28672, **_LLAMA3),
    "meta-llama/Llama-3.1-8B": ModelArgs(dim=4096, n_layers=32, n_heads=32, n_kv_heads=8, intermediate_size=14336, **_LLAMA31),
    "meta-llama/Llama-3.1-70B": ModelArgs(dim=8192, n_layers=80, n_heads=64, n_kv_heads=8, intermediate_size=28672, **_LLAMA31),
    "meta-llama/Llama-3.1-405B": ModelArgs(dim=16384, n_layers=126, n_heads=128, n_kv_heads=8, intermediate_size=53248, **_LLAMA31),
    "meta-llama/Llama-3.2-1B": ModelArgs(dim=2048, n_layers=16, n_heads=32, n_kv_heads=8, intermediate_size=8192,
                                         tie_embeddings=True, **dict(_LLAMA31, rope_scaling=_L32_SCALING)),
    "meta-llama/Llama-3.2-3B": ModelArgs(dim=3072, n_layers=28, n_heads=24, n_kv_heads=8, intermediate_size=8192,
                                         tie_embeddings=True, **dict(_LLAMA31, rope_scaling=_L32_SCALING)),
    # A few-MB Llama-3-style shape (GQA, llama3 RoPE scaling, tiktoken) for tests and the default run.
    "tiny": ModelArgs(dim=256, n_layers=4, n_heads=4, n_kv_heads=2, vocab_size=1024, intermediate_size=768,
                      max_seq_len=4096, rope_base=500000.0, tokenizer="tiktoken",
                      rope_scaling=dict(_L31_SCALING, original_max_position_embeddings=512)),
    # Its Llama-2-style sibling (MHA, no scaling, sentencepiece).
    "tiny-llama2": ModelArgs(dim=256, n_layers=4, n_heads=4, n_kv_heads=4, vocab_size=1024, intermediate_size=768,
                             max_seq_len=4096, tokenizer="sentencepiece"),
}

# Fine-tuned variants share their base model's shape.
_VARIANT_SUFFIXES = ("-Instruct", "-instruct", "-chat-hf", "-chat")
_ALIASES = {"meta-llama/Meta-Llama-3.1-8B": "meta-llama/Llama-3.1-8B",
            "meta-llama/Meta-Llama-3.1-70B": "meta-llama/Llama-3.1-70B",
            "meta-llama/Meta-Llama-3.1-405B": "meta-llama/Llama-3.1-405B"}


def find_architecture(name: str) -> tuple[str, ModelArgs]:
    """Registry lookup by HF repo name (instruct/chat variants map to their base shape)."""
    key = _ALIASES.get(name, name)
    if key not in ARCHITECTURES:
        for suffix in _VARIANT_SUFFIXES:
            base = key.replace(suffix, "-hf" if suffix.endswith("-hf") else "")
            base = _ALIASES.get(base, base)
            if base in ARCHITECTURES:
                key = base
                break
    if key not in ARCHITECTURES:
        raise KeyError(f"unknown model {name!r}; known shapes: {', '.join(ARCHITECTURES)}")
    return key, ARCHITECTURES[key]


# ----------------------------------------------------------------------------- KV caches

class KVCache(nn.Module):
    """Static cache in the model's dtype, shape (batch, n_kv_heads, cache_size, head_dim).

    A cache owns both how K/V are stored and how attention reads them, so a new storage format
    (int8, fp8, a fused kernel) is one subclass registered in llama/techniques.py.
    """

    uses_mask = True  # False: attention() applies causality from input_pos itself, so no mask is built

    def __init__(self, batch_size: int, n_kv_heads: int, cache_size: int, head_dim: int, dtype: torch.dtype):
        super().__init__()
        shape = (batch_size, n_kv_heads, cache_size, head_dim)
        self.register_buffer("k_cache", torch.zeros(shape, dtype=dtype), persistent=False)
        self.register_buffer("v_cache", torch.zeros(shape, dtype=dtype), persistent=False)

    @property
    def cache_size(self) -> int:
        return self.k_cache.shape[2]

    def update(self, input_pos: Tensor, k: Tensor, v: Tensor) -> None:
        self.k_cache.index_copy_(2, input_pos, k.to(self.k_cache.dtype))
        self.v_cache.index_copy_(2, input_pos, v.to(self.v_cache.dtype))

    def read(self) -> tuple[Tensor, Tensor]:
        return self.k_cache, self.v_cache

    def fuses_decode_step(self, qkv: Tensor) -> bool:
        """Whether decode_step() takes this step (a cache with a fused kernel says so)."""
        return False

    def decode_step(self, qkv: Tensor, input_pos: Tensor, freqs_cis: Tensor, n_heads: int) -> Tensor:
        """RoPE, update and attention of one token from the wqkv output (B, 1, (Hq + 2 Hkv) D) in
        one kernel -> (B, 1, Hq D); freqs_cis is the RoPE table's row at input_pos."""
        raise NotImplementedError(f"{type(self).__name__} has no fused decode step")

    def attention(self, q: Tensor, input_pos: Tensor, mask: Tensor) -> Tensor:
        k, v = self.read()
        # enable_gqa lets SDPA broadcast K/V heads instead of copying them per query head.
        return F.scaled_dot_product_attention(q, k.to(q.dtype), v.to(q.dtype), attn_mask=mask, enable_gqa=True)

    def bytes_read_per_step(self, context_len: int) -> int:
        """KV bytes one decode step reads at this context (for bandwidth accounting)."""
        b, h, s, d = self.k_cache.shape
        return 2 * b * h * s * d * self.k_cache.element_size()  # SDPA over the full static cache


class Int8KVCache(KVCache):
    """Seed-style int8 KV cache: symmetric int8 per (token, head) with a scale, dequantized whole
    to the model dtype on every step before SDPA. Halves cache memory; costs an extra pass."""

    def __init__(self, batch_size, n_kv_heads, cache_size, head_dim, dtype):
        nn.Module.__init__(self)
        shape = (batch_size, n_kv_heads, cache_size, head_dim)
        self.dtype = dtype
        self.register_buffer("k_cache", torch.zeros(shape, dtype=torch.int8), persistent=False)
        self.register_buffer("v_cache", torch.zeros(shape, dtype=torch.int8), persistent=False)
        self.register_buffer("k_scale", torch.ones(shape[:3] + (1,), dtype=dtype), persistent=False)
        self.register_buffer("v_scale", torch.ones(shape[:3] + (1,), dtype=dtype), persistent=False)

    def update(self, input_pos, k, v):
        # The same int8 quantizer as the fused caches, so the two methods differ only in how they read.
        kq, ks = decode_attention.quantize(k, decode_attention.FMT_INT8)
        vq, vs = decode_attention.quantize(v, decode_attention.FMT_INT8)
        self.k_cache.index_copy_(2, input_pos, kq)
        self.v_cache.index_copy_(2, input_pos, vq)
        self.k_scale.index_copy_(2, input_pos, ks.to(self.k_scale.dtype))
        self.v_scale.index_copy_(2, input_pos, vs.to(self.v_scale.dtype))

    def read(self):
        return (self.k_cache.to(self.dtype) * self.k_scale, self.v_cache.to(self.dtype) * self.v_scale)

    def bytes_read_per_step(self, context_len):
        # The cache as stored (the bytes this format needs), not the dequantized copy read() writes
        # and SDPA reads again: that extra traffic is the method's waste, shown as a lower fraction
        # of the roofline.
        b, h, s, d = self.k_cache.shape
        return 2 * b * h * s * (d + self.k_scale.element_size())


KV_CACHES: dict[str, type[KVCache]] = {"model": KVCache, "int8": Int8KVCache}

# The prefix-only caches (issue 7) subclass KVCache and add themselves to KV_CACHES on import.


def _cache_setup(kv_cache: str | type[KVCache], mask: str) -> tuple[type[KVCache], str]:
    """The cache class and mask mode of Transformer.setup_caches: caches that apply causality from
    input_pos themselves get no mask."""
    cache_cls = KV_CACHES[kv_cache] if isinstance(kv_cache, str) else kv_cache
    return cache_cls, (mask if cache_cls.uses_mask else "none")
import llama.kernels.kv_caches  # noqa: E402,F401


# ----------------------------------------------------------------------------- the model

class Transformer(nn.Module):
    # The RMSNorm that llama.kernels.gemv.quantize_linears may move into the linear reading its
    # output (fuse_norms=True): the norm becomes that GEMV's prologue, one launch fewer per token.
    norm_into = {"norm": "output"}

    def __init__(self, config: ModelArgs):
        super().__init__()
        self.config = config
        self.tok_embeddings = nn.Embedding(config.vocab_size, config.dim)
        self.layers = nn.ModuleList(TransformerBlock(config) for _ in range(config.n_layers))
        self.norm = RMSNorm(config.dim, config.norm_eps)
        self.output = nn.Linear(config.dim, config.vocab_size, bias=False)
        if config.tie_embeddings:
            self.output.weight = self.tok_embeddings.weight
        self.freqs_cis: Optional[Tensor] = None
        self.causal_mask: Optional[Tensor] = None
        self.mask_mode = "quadratic"
        self.max_batch_size = -1
        self.cache_size = -1

    def setup_caches(self, max_batch_size: int, cache_size: int, kv_cache: str | type[KVCache] = "model",
                     mask: str = "quadratic") -> None:
        """Allocate static KV caches of `cache_size` slots and the RoPE table.

        mask="quadratic" keeps gpt-fast's S x S boolean mask buffer (the seed's "normal" path);
        mask="linear" builds only the (T, S) rows a step needs, from input_pos.
        """
        if cache_size > self.config.max_seq_len:
            raise ValueError(f"cache_size {cache_size} exceeds this model's max_seq_len {self.config.max_seq_len}")
        if mask not in ("quadratic", "linear"):
            raise ValueError(f"mask must be 'quadratic' or 'linear', not {mask!r}")
        cache_cls, self.mask_mode = _cache_setup(kv_cache, mask)
        # The embedding, not `output`, which weight-only linears (llama/kernels) may replace without a `.weight`.
        dtype = self.tok_embeddings.weight.dtype
        device = self.tok_embeddings.weight.device
        self.max_batch_size, self.cache_size = max_batch_size, cache_size
        for layer in self.layers:
            layer.attention.kv_cache = cache_cls(max_batch_size, self.config.n_kv_heads, cache_size,
                                                 self.config.head_dim, dtype).to(device)
        self.freqs_cis = precompute_freqs_cis(cache_size, self.config.head_dim, self.config.rope_base,
                                              dtype, self.config.rope_scaling).to(device)
        self.causal_mask = None
        if self.mask_mode == "quadratic":
            self.causal_mask = torch.tril(torch.ones(cache_size, cache_size, dtype=torch.bool, device=device))

    def cache_bytes(self, max_batch_size: int, cache_size: int, kv_cache: str | type[KVCache] = "model",
                    mask: str = "quadratic") -> int:
        """Bytes setup_caches allocates for these arguments: the KV caches and the quadratic mask (the
        RoPE table is small). The caches are built on the meta device: nothing is allocated."""
        cache_cls, mask_mode = _cache_setup(kv_cache, mask)
        with torch.device("meta"):
            cache = cache_cls(max_batch_size, self.config.n_kv_heads, cache_size, self.config.head_dim,
                              self.tok_embeddings.weight.dtype)
        per_layer = sum(b.numel() * b.element_size() for b in cache.buffers())
        return len(self.layers) * per_layer + (cache_size * cache_size if mask_mode == "quadratic" else 0)

    def step_mask(self, input_pos: Tensor) -> Optional[Tensor]:
        if self.mask_mode == "none":
            return None
        if self.mask_mode == "quadratic":
            return self.causal_mask[None, None, input_pos]
        slots = torch.arange(self.cache_size, device=input_pos.device)
        return (slots[None, :] <= input_pos[:, None])[None, None]

    def forward(self, idx: Tensor, input_pos: Optional[Tensor] = None) -> Tensor:
        """idx: (batch, T) tokens. With input_pos (T,), attend through the KV caches; without,
        run plain causal attention over idx alone (no cache; used by eval and tests)."""
        if input_pos is None:
            seq_len = idx.shape[1]
            freqs_cis = precompute_freqs_cis(seq_len, self.config.head_dim, self.config.rope_base,
                                             self.tok_embeddings.weight.dtype, self.config.rope_scaling).to(idx.device)
            mask = None
        else:
            assert self.freqs_cis is not None, "call setup_caches() before decoding with input_pos"
            freqs_cis = self.freqs_cis[input_pos]
            mask = self.step_mask(input_pos)
        x = self.tok_embeddings(idx)
        for layer in self.layers:
            x = layer(x, input_pos, freqs_cis, mask)
        return self.output(self.norm(x))


class TransformerBlock(nn.Module):
    # As Transformer.norm_into: each norm and the linear that reads its output. Once moved, the norm
    # is an nn.Identity and forward passes x unnormalized to a linear that normalizes it itself.
    norm_into = {"attention_norm": "attention.wqkv", "ffn_norm": "feed_forward.w13"}

    def __init__(self, config: ModelArgs):
        super().__init__()
        self.attention = Attention(config)
        self.feed_forward = FeedForward(config)
        self.attention_norm = RMSNorm(config.dim, config.norm_eps)
        self.ffn_norm = RMSNorm(config.dim, config.norm_eps)

    def forward(self, x: Tensor, input_pos: Optional[Tensor], freqs_cis: Tensor, mask: Optional[Tensor]) -> Tensor:
        h = x + self.attention(self.attention_norm(x), input_pos, freqs_cis, mask)
        return h + self.feed_forward(self.ffn_norm(h))


class Attention(nn.Module):
    def __init__(self, config: ModelArgs):
        super().__init__()
        self.n_heads, self.n_kv_heads, self.head_dim = config.n_heads, config.n_kv_heads, config.head_dim
        self.wqkv = nn.Linear(config.dim, (config.n_heads + 2 * config.n_kv_heads) * config.head_dim, bias=False)
        self.wo = nn.Linear(config.n_heads * config.head_dim, config.dim, bias=False)
        self.kv_cache: Optional[KVCache] = None

    def forward(self, x: Tensor, input_pos: Optional[Tensor], freqs_cis: Tensor, mask: Optional[Tensor]) -> Tensor:
        bsz, seqlen, _ = x.shape
        q_size, kv_size = self.n_heads * self.head_dim, self.n_kv_heads * self.head_dim
        qkv = self.wqkv(x)
        if input_pos is not None and self.kv_cache.fuses_decode_step(qkv):
            # One kernel instead of RoPE, the cache write and attention apart (llama/kernels/kv_caches.py).
            return self.wo(self.kv_cache.decode_step(qkv, input_pos, freqs_cis, self.n_heads))
        q, k, v = qkv.split([q_size, kv_size, kv_size], dim=-1)
        q = apply_rotary_emb(q.view(bsz, seqlen, self.n_heads, self.head_dim), freqs_cis)
        k = apply_rotary_emb(k.view(bsz, seqlen, self.n_kv_heads, self.head_dim), freqs_cis)
        v = v.view(bsz, seqlen, self.n_kv_heads, self.head_dim)
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))
        if input_pos is None:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
        else:
            self.kv_cache.update(input_pos, k, v)
            y = self.kv_cache.attention(q, input_pos, mask)
        return self.wo(y.transpose(1, 2).contiguous().view(bsz, seqlen, -1))


class FeedForward(nn.Module):
    # The linear that llama.kernels.gemv.quantize_linears may swap for one that returns
    # silu(gate) * up itself (swiglu=True): SwiGLU in the GEMV's epilogue, one launch fewer per layer.
    swiglu_linear = "w13"

    def __init__(self, config: ModelArgs):
        super().__init__()
        self.w13 = nn.Linear(config.dim, 2 * config.intermediate_size, bias=False)
        self.w2 = nn.Linear(config.intermediate_size, config.dim, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        if getattr(self.w13, "swiglu", False):
            return self.w2(self.w13(x))
        gate, up = self.w13(x).chunk(2, dim=-1)
        return self.w2(F.silu(gate) * up)


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        return rms_norm(x, self.weight, self.eps)


def rms_norm(x: Tensor, weight: Tensor, eps: float) -> Tensor:
    """RMSNorm.forward, also run by the GEMV linears that took a norm in (llama/kernels/gemv.py) on
    their torch path; their kernels compute the same: r in float32, x * r rounded to x's dtype, times
    the weight."""
    xf = x.float()
    return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)).type_as(x) * weight


# ----------------------------------------------------------------------------- RoPE

def apply_rope_scaling(freqs: Tensor, scaling: dict) -> Tensor:
    """Llama 3.1's frequency-dependent RoPE scaling (long wavelengths divided by `factor`)."""
    factor, low, high = scaling["factor"], scaling["low_freq_factor"], scaling["high_freq_factor"]
    old_len = scaling["original_max_position_embeddings"]
    wavelen = 2 * math.pi / freqs
    smooth = ((old_len / wavelen - low) / (high - low)).clamp(0.0, 1.0)
    scaled = (1 - smooth) * freqs / factor + smooth * freqs
    return torch.where(wavelen < old_len / high, freqs, torch.where(wavelen > old_len / low, freqs / factor, scaled))


def precompute_freqs_cis(seq_len: int, head_dim: int, base: float, dtype: torch.dtype,
                         rope_scaling: Optional[dict] = None) -> Tensor:
    freqs = 1.0 / (base ** (torch.arange(0, head_dim, 2)[: head_dim // 2].double() / head_dim))
    if rope_scaling is not None:
        freqs = apply_rope_scaling(freqs, rope_scaling)
    angles = torch.outer(torch.arange(seq_len, dtype=torch.float64), freqs)
    cache = torch.stack([angles.cos(), angles.sin()], dim=-1)  # (seq, head_dim/2, 2)
    return cache.to(dtype)


def apply_rotary_emb(x: Tensor, freqs_cis: Tensor) -> Tensor:
    """x: (B, T, H, D) with interleaved (real, imag) pairs; freqs_cis: (T, D/2, 2)."""
    xs = x.float().reshape(*x.shape[:-1], -1, 2)
    fc = freqs_cis.float().view(1, xs.size(1), 1, xs.size(3), 2)
    out = torch.stack([xs[..., 0] * fc[..., 0] - xs[..., 1] * fc[..., 1],
                       xs[..., 1] * fc[..., 0] + xs[..., 0] * fc[..., 1]], dim=-1)
    return out.flatten(3).type_as(x)
