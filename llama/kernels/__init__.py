"""Our own kernels (Triton on CUDA, each with a plain-torch fallback on CPU)."""
from llama.kernels.gemv import Int4Linear, RowwiseLinear, quantize_linears

__all__ = ["Int4Linear", "RowwiseLinear", "quantize_linears"]
