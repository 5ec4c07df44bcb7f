"""KV caches whose attention reads only the filled prefix, in the storage format itself.

Each class stores K/V in one format of llama/kernels/decode_attention.py and applies causality
from input_pos, so the model builds no mask for it (uses_mask = False). On CUDA attention runs the
Triton kernel (no host sync: CUDA-graph friendly); elsewhere a plain-torch fallback dequantizes the
prefix only. Adds itself to llama.model.KV_CACHES (llama/model.py imports this module).
"""
from __future__ import annotations

import torch
import torch.nn as nn
from torch import Tensor

from llama.kernels import decode_attention as da
from llama.model import KV_CACHES, KVCache


class PrefixKVCache(KVCache):
    """Model-dtype K/V (bf16 on GPU) read through the prefix-only kernel; the baseline for the formats."""

    fmt = da.FMT_MODEL
    uses_mask = False

    def __init__(self, batch_size: int, n_kv_heads: int, cache_size: int, head_dim: int, dtype: torch.dtype):
        nn.Module.__init__(self)
        shape = (batch_size, n_kv_heads, cache_size, head_dim)
        # float8 values live in a uint8 buffer (index_copy_ has no float8 kernel) and are viewed as
        # float8 only to be read. Writing through a dtype view instead made compiled blocks copy the
        # whole cache twice per layer and step on CUDA (functionalization could not update in place).
        store_dtype, store_dim, n_groups = {
            da.FMT_MODEL: (dtype, head_dim, 0),
            da.FMT_INT8: (torch.int8, head_dim, 1),
            da.FMT_FP8: (torch.uint8, head_dim, 1),
            da.FMT_INT4: (torch.int8, head_dim // 2, head_dim // da.INT4_GROUP),
        }[self.fmt]
        store = shape[:3] + (store_dim,)
        self.register_buffer("k_cache", torch.zeros(store, dtype=store_dtype), persistent=False)
        self.register_buffer("v_cache", torch.zeros(store, dtype=store_dtype), persistent=False)
        scale_shape = shape[:3] + (n_groups,)
        for name in ("k_scale", "v_scale"):
            self.register_buffer(name, torch.ones(scale_shape, dtype=dtype) if n_groups else None, persistent=False)
        self.dtype = dtype

    def update(self, input_pos: Tensor, k: Tensor, v: Tensor) -> None:
        for new, store, scale in ((k, self.k_cache, self.k_scale), (v, self.v_cache, self.v_scale)):
            q, s = da.quantize(new, self.fmt)
            q = q.view(torch.uint8) if self.fmt == da.FMT_FP8 else q.to(store.dtype)
            store.index_copy_(2, input_pos, q)
            if scale is not None:
                scale.index_copy_(2, input_pos, s)

    def read(self) -> tuple[Tensor, Tensor]:
        """The whole cache dequantized (for inspection and tests; attention never calls this)."""
        k, v = self.stored()
        return (da.dequantize(k, self.k_scale, self.fmt, self.dtype), da.dequantize(v, self.v_scale, self.fmt, self.dtype))

    def stored(self) -> tuple[Tensor, Tensor]:
        """K and V as the format's dtype (views of the buffers: read them, never write through them)."""
        if self.fmt == da.FMT_FP8:
            return self.k_cache.view(torch.float8_e4m3fn), self.v_cache.view(torch.float8_e4m3fn)
        return self.k_cache, self.v_cache

    def fuses_decode_step(self, qkv: Tensor) -> bool:
        return self.fmt == da.FMT_MODEL and da.fused_decode_available(qkv, self.cache_size)

    def decode_step(self, qkv: Tensor, input_pos: Tensor, freqs_cis: Tensor, n_heads: int) -> Tensor:
        return da.decode_step_attention(qkv, self.k_cache, self.v_cache, freqs_cis, input_pos, n_heads)

    def attention(self, q: Tensor, input_pos: Tensor, mask=None) -> Tensor:
        args = (q, *self.stored(), self.k_scale, self.v_scale, input_pos, self.fmt)
        if q.is_cuda:
            return da.attention_kernel(*args)
        return da.attention_reference(*args)

    def bytes_read_per_step(self, context_len: int) -> int:
        """K, V and scales of the filled prefix only: what the kernel loads."""
        b, h, _, d = self.k_cache.shape
        per_slot = d * self.k_cache.element_size()
        if self.k_scale is not None:
            per_slot += self.k_scale.shape[-1] * self.k_scale.element_size()
        return 2 * b * h * min(context_len, self.cache_size) * per_slot


class Int8PrefixKVCache(PrefixKVCache):
    """int8 K/V, one scale per (token, head): half of bf16, dequantized inside the kernel."""
    fmt = da.FMT_INT8


class Fp8PrefixKVCache(PrefixKVCache):
    """float8_e4m3 K/V, one scale per (token, head): int8's size, finer near zero, coarser at the top."""
    fmt = da.FMT_FP8


class Int4PrefixKVCache(PrefixKVCache):
    """int4 K/V, one scale per (token, head, 32 dims): about 0.28 of bf16's bytes."""
    fmt = da.FMT_INT4


FUSED_KV_CACHES: dict[str, type[KVCache]] = {
    "prefix": PrefixKVCache,
    "int8-fused": Int8PrefixKVCache,
    "fp8-fused": Fp8PrefixKVCache,
    "int4-fused": Int4PrefixKVCache,
}
KV_CACHES.update(FUSED_KV_CACHES)
