"""Our own kernels, each with a plain-torch fallback on CPU. Import the module you need
(llama.kernels.gemv, llama.kernels.decode_attention, llama.kernels.kv_caches): nothing is imported
here, so loading llama.model does not pull in Triton."""
