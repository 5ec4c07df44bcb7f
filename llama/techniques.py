"""The technique registry: the one place an inference technique is added.

A technique is one of three kinds:
  weight  quantizes the Linear weights in place with a torchao config (at most one per spec)
  kv      names the KVCache class (llama/model.py) that stores K/V and runs attention over it
  mask    picks how the causal mask is built ("quadratic" S x S buffer, or "linear" per-step rows)

A spec joins names with '+', e.g. "int4wo-64+kv-int8+linear-mask". `apply` quantizes a model in
place and returns the RunOptions that Transformer.setup_caches needs. Cache size is a run option
(--cache_size), not a technique.

    python -m llama.techniques      # the registry as a table (for the README)
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, replace
from typing import Callable, Optional

import torch
import torch.nn as nn

from llama.model import Int8KVCache, KVCache
from llama.kernels.kv_caches import Fp8PrefixKVCache, Int4PrefixKVCache, Int8PrefixKVCache, PrefixKVCache

if not torch.cuda.is_available():
    # torchao's wheel ships CUDA-only .so files; on CPU-only torch they fail to load with noisy warnings.
    os.environ.setdefault("TORCHAO_FORCE_SKIP_LOADING_SO_FILES", "1")


class UnknownTechnique(ValueError):
    """A spec names something that is not in TECHNIQUES (or is malformed)."""


class Unsupported(Exception):
    """The technique exists but cannot run on this device/dtype; str(e) is the reason."""


@dataclass(frozen=True)
class RunOptions:
    """What a resolved spec asks of Transformer.setup_caches."""
    kv_cache: type[KVCache] = KVCache
    mask: str = "quadratic"


# A support check gets (device, dtype, <group> or None) and returns why it cannot run there, or None.
Check = Callable[[torch.device, torch.dtype, Optional[int]], Optional[str]]


@dataclass(frozen=True)
class Technique:
    name: str                      # exact name, or a pattern with one "<group>" parameter
    kind: str                      # "weight" | "kv" | "mask"
    doc: str
    devices: str                   # for the table; `check` is what decides
    check: Check
    # weight: (device, param) -> torchao config; param is the <group> value or None
    config: Optional[Callable[[torch.device, Optional[int]], object]] = None
    # weight, own code instead of a torchao config: (model, param, filter_fn) -> None, in place
    quantize: Optional[Callable[[nn.Module, Optional[int], Callable], None]] = None
    kv_cache: Optional[type[KVCache]] = None
    mask: Optional[str] = None
    params: tuple[int, ...] = ()   # allowed values of <group>

    def names(self) -> list[str]:
        return [self.name.replace("<group>", str(p)) for p in self.params] if self.params else [self.name]


# ----------------------------------------------------------------------------- support checks

def _anywhere(device: torch.device, dtype: torch.dtype, group: Optional[int] = None) -> Optional[str]:
    return None


def _cpu_or_cuda(device: torch.device, dtype: torch.dtype, group: Optional[int] = None) -> Optional[str]:
    if device.type not in ("cpu", "cuda"):
        return f"torchao weight quantization runs on cpu or cuda here, not {device.type}"
    return None


def _int4(device: torch.device, dtype: torch.dtype, group: Optional[int] = None) -> Optional[str]:
    if reason := _cpu_or_cuda(device, dtype):
        return reason
    if device.type == "cpu" and group not in _CPU_INT4_GROUPS:
        return f"int4 on CPU (Int4OpaqueTensor) takes group sizes {'/'.join(map(str, _CPU_INT4_GROUPS))}, not {group}"
    if device.type == "cuda" and dtype != torch.bfloat16:
        return f"int4 tile_packed_to_4d kernels on CUDA need bfloat16, not {str(dtype).removeprefix('torch.')}"
    return None


def _float8_dynamic(device: torch.device, dtype: torch.dtype, group: Optional[int] = None) -> Optional[str]:
    if device.type != "cuda":
        return f"float8 dynamic activation quantization needs CUDA compute capability >= 8.9, not {device.type}"
    major, minor = torch.cuda.get_device_capability(device)
    if (major, minor) < (8, 9):
        return f"float8 dynamic activation quantization needs CUDA compute capability >= 8.9, this GPU has {major}.{minor}"
    return None


# ----------------------------------------------------------------------------- torchao configs
# torchao is imported inside the factories: it takes seconds to import and plain runs don't need it.
# set_inductor_config=False: otherwise quantize_ switches global inductor settings on for quantized runs
# only, and compiled numbers would not compare like with like; llama.generate sets them for every run.

def _int8wo(device, _):
    from torchao.quantization import Int8WeightOnlyConfig
    return Int8WeightOnlyConfig(set_inductor_config=False)


def _int8dq(device, _):
    from torchao.quantization import Int8DynamicActivationInt8WeightConfig
    return Int8DynamicActivationInt8WeightConfig(set_inductor_config=False)


def _int4wo(device, group, hqq=False):
    if device.type == "cuda":
        # The default "plain" packing needs the mslk package, which PyPI does not really serve.
        from torchao.quantization import Int4WeightOnlyConfig
        return Int4WeightOnlyConfig(group_size=group, int4_packing_format="tile_packed_to_4d",
                                    int4_choose_qparams_algorithm="hqq" if hqq else "tinygemm",
                                    set_inductor_config=False)
    from torchao.prototype.quantization.int4 import PrototypeInt4WeightOnlyConfig
    return PrototypeInt4WeightOnlyConfig(group_size=group, int4_choose_qparams_algorithm="hqq" if hqq else "tinygemm",
                                         set_inductor_config=False)


def _float8wo(device, _):
    from torchao.quantization import Float8WeightOnlyConfig
    return Float8WeightOnlyConfig(set_inductor_config=False)


def _float8dq(granularity):
    def config(device, _):
        from torchao.quantization import Float8DynamicActivationFloat8WeightConfig, PerRow, PerTensor
        return Float8DynamicActivationFloat8WeightConfig(granularity={"row": PerRow, "tensor": PerTensor}[granularity](),
                                                         set_inductor_config=False)
    return config


_GROUPS = (32, 64, 128, 256)
_CPU_INT4_GROUPS = (32, 64, 128)  # torchao 0.18's CPU int4 layout asserts these


def _gemv_linears(model, scheme, group, filter_fn):
    from llama.kernels.gemv import quantize_linears
    quantize_linears(model, scheme, group or 128, filter_fn=filter_fn)


def _float8_triton(device: torch.device, dtype: torch.dtype, group: Optional[int] = None) -> Optional[str]:
    if reason := _cpu_or_cuda(device, dtype):
        return reason
    if device.type == "cuda" and torch.cuda.get_device_capability(device) < (8, 9):
        return "Triton's float8 e4m3 loads need CUDA compute capability >= 8.9"
    return None


TECHNIQUES: list[Technique] = [
    Technique("none", "weight", "weights in the model dtype (the baseline)", "any", _anywhere),
    Technique("int8wo", "weight", "int8 weights, per-row scales; activations stay in the model dtype",
              "cpu, cuda", _cpu_or_cuda, config=_int8wo),
    Technique("int8dq", "weight", "int8 weights and per-token dynamically quantized int8 activations",
              "cpu, cuda", _cpu_or_cuda, config=_int8dq),
    Technique("int4wo-<group>", "weight", "int4 weights, asymmetric, one scale/zero per <group> inputs",
              "cpu (group <= 128), cuda (bf16)", _int4, config=_int4wo, params=_GROUPS),
    Technique("int4wo-hqq-<group>", "weight", "int4wo with scales/zeros fitted by HQQ's optimizer (slower to quantize)",
              "cpu (group <= 128), cuda (bf16)", _int4, config=lambda d, g: _int4wo(d, g, hqq=True), params=_GROUPS),
    Technique("float8wo", "weight", "float8 e4m3 weights, per-row scales; activations stay in the model dtype",
              "cpu, cuda", _cpu_or_cuda, config=_float8wo),
    Technique("float8dq-row", "weight", "float8 e4m3 weights and dynamic activations, per-row scales",
              "cuda cc >= 8.9", _float8_dynamic, config=_float8dq("row")),
    Technique("float8dq-tensor", "weight", "float8 e4m3 weights and dynamic activations, one scale per tensor",
              "cuda cc >= 8.9", _float8_dynamic, config=_float8dq("tensor")),
    Technique("kv-int8", "kv", "int8 K/V with per-(token, head) scales, dequantized whole before SDPA",
              "any", _anywhere, kv_cache=Int8KVCache),
    Technique("linear-mask", "mask", "build only the mask rows a step needs instead of an S x S buffer",
              "any", _anywhere, mask="linear"),
    # Prefix-only caches (llama/kernels/kv_caches.py): attention reads only the filled slots, in the
    # stored format (Triton split-K kernel on CUDA, torch on the prefix elsewhere); no mask is built.
    Technique("kv-prefix", "kv", "model-dtype K/V, attention reads only the filled prefix (no mask)",
              "any", _anywhere, kv_cache=PrefixKVCache),
    Technique("kv-int8-fused", "kv", "int8 K/V, per-(token, head) scales, dequantized inside prefix-only attention",
              "any", _anywhere, kv_cache=Int8PrefixKVCache),
    Technique("kv-fp8", "kv", "float8 e4m3 K/V, per-(token, head) scales, dequantized inside prefix-only attention",
              "cpu, cuda cc >= 8.9", _float8_triton, kv_cache=Fp8PrefixKVCache),
    Technique("kv-int4", "kv", "int4 K/V, one scale per (token, head, 32 dims), dequantized inside prefix-only attention",
              "any", _anywhere, kv_cache=Int4PrefixKVCache),
    # Our weight-only linears (llama/kernels/gemv.py): Triton GEMV for decode on CUDA, torch on the
    # dequantized weight elsewhere. Stored as torchao's same-named techniques, read once per token.
    Technique("int8wo-triton", "weight", "int8 weights, per-row scales, our Triton GEMV in decode",
              "cpu, cuda", _cpu_or_cuda, quantize=lambda m, _, f: _gemv_linears(m, "int8", 0, f)),
    Technique("int4wo-triton-<group>", "weight", "int4 weights, asymmetric per <group> inputs, our Triton GEMV in decode",
              "cpu, cuda", _cpu_or_cuda, quantize=lambda m, g, f: _gemv_linears(m, "int4", g, f), params=_GROUPS),
    Technique("float8wo-triton", "weight", "float8 e4m3 weights, per-row scales, our Triton GEMV in decode",
              "cpu, cuda cc >= 8.9", _float8_triton, quantize=lambda m, _, f: _gemv_linears(m, "float8", 0, f)),
]


def known_names() -> list[str]:
    return [n for t in TECHNIQUES for n in t.names()]


def _lookup(name: str) -> tuple[Technique, Optional[int]]:
    for t in TECHNIQUES:
        if not t.params:
            if name == t.name:
                return t, None
            continue
        pattern = re.escape(t.name).replace(re.escape("<group>"), r"(\d+)")
        if m := re.fullmatch(pattern, name):
            group = int(m.group(1))
            if group not in t.params:
                raise UnknownTechnique(f"{name!r}: group size must be one of {', '.join(map(str, t.params))}")
            return t, group
    raise UnknownTechnique(f"unknown technique {name!r}; known: {', '.join(known_names())} (join with '+')")


def parse(spec: str) -> list[tuple[Technique, Optional[int]]]:
    """Resolve a spec to registry entries; checks names and composition, not the device."""
    names = [n.strip() for n in spec.split("+")]
    if not spec.strip() or "" in names:
        raise UnknownTechnique(f"empty technique name in spec {spec!r}; known: {', '.join(known_names())}")
    resolved = [_lookup(n) for n in names]
    for kind in ("weight", "kv", "mask"):
        of_kind = [n for n, (t, _) in zip(names, resolved) if t.kind == kind]
        if len(of_kind) > 1:
            raise UnknownTechnique(f"spec {spec!r} has {len(of_kind)} {kind} techniques ({', '.join(of_kind)}); use at most one")
    return resolved


def check(spec: str, device: str | torch.device, dtype: torch.dtype) -> None:
    """Raise UnknownTechnique or Unsupported before any weights are loaded."""
    device = torch.device(device)
    for (t, param), name in zip(parse(spec), spec.split("+")):
        if reason := t.check(device, dtype, param):
            raise Unsupported(f"{name.strip()}: {reason}")


def _quantizable(model: nn.Module) -> Callable[[nn.Module, str], bool]:
    tied = model.output.weight is model.tok_embeddings.weight

    def filter_fn(module: nn.Module, fqn: str) -> bool:
        # The output projection is quantized too: it is the largest single matrix (7% of Llama-3.1-8B's
        # weight bytes, 21% of Llama-3.2-1B's) and decode reads all of it every step, as gpt-fast does.
        # With tied embeddings it is left alone instead: quantizing it would give `output` its own
        # quantized tensor while the embedding keeps the original, i.e. two copies of the table.
        return isinstance(module, nn.Linear) and not (tied and fqn == "output")
    return filter_fn


def apply(model: nn.Module, spec: str, device: str | torch.device, dtype: torch.dtype) -> RunOptions:
    """Quantize `model` (already on `device` in `dtype`) in place; return its cache/mask options."""
    device = torch.device(device)
    check(spec, device, dtype)
    options = RunOptions()
    for t, param in parse(spec):
        if t.config is not None:
            from torchao.quantization import quantize_
            quantize_(model, t.config(device, param), filter_fn=_quantizable(model))
        if t.quantize is not None:
            t.quantize(model, param, _quantizable(model))
        if t.kv_cache is not None:
            options = replace(options, kv_cache=t.kv_cache)
        if t.mask is not None:
            options = replace(options, mask=t.mask)
    return options


def storage_bytes(t: torch.Tensor) -> int:
    """Bytes a tensor holds as stored: a torchao subclass counts its inner tensors (packed data,
    scales, zeros), not numel x the element size it reports."""
    if hasattr(t, "__tensor_flatten__") and type(t) not in (torch.Tensor, nn.Parameter):
        names, _ = t.__tensor_flatten__()
        return sum(storage_bytes(getattr(t, n)) for n in names if getattr(t, n) is not None)
    return t.numel() * t.element_size()


def model_size_bytes(model: nn.Module) -> int:
    """Weights as stored: parameters and buffers, a tied tensor counted once, KV caches not at all."""
    kv = {id(b) for m in model.modules() if isinstance(m, KVCache) for b in m.buffers()}
    seen = {id(t): t for t in [*model.parameters(), *model.buffers()] if id(t) not in kv}
    return sum(storage_bytes(t) for t in seen.values())


def table() -> str:
    from tabulate import tabulate
    rows = [(t.name + (f" ({'/'.join(map(str, t.params))})" if t.params else ""), t.kind, t.devices, t.doc)
            for t in TECHNIQUES]
    return tabulate(rows, headers=["name", "kind", "devices", "doc"], tablefmt="github")


if __name__ == "__main__":
    print(table())
