"""Our own kernels, each with a plain-torch fallback on CPU: Triton GEMV for weight-only decode
(gemv), split-K attention over a quantized KV prefix (decode_attention) and the caches that use it
(kv_caches, imported by llama.model to register them), and which of them launch with programmatic
dependent launch on sm_90+ (pdl). Triton is imported where installed and its kernels run on CUDA (or
under TRITON_INTERPRET=1); nothing here needs it on CPU."""
