"""Long context (issue 7): the seed's KV-cache methods and the prefix-only caches, side by side.

One process, synthetic weights (seeded, random, made on the device), so every variant sees the
same model. For each variant and cache size it prints peak allocated/reserved memory, TTFT and
decode tok/s (decode steps replayed from a CUDA graph on GPU, so launch overhead is out of every
variant alike), and decode against the roofline: bytes per token = weights + the KV bytes the
variant's attention actually reads (KVCache.bytes_read_per_step), over the copy bandwidth measured
here. Then real long prompts (chunked prefill, no S x S mask) and the logits error of each KV format.

    python benchmarks/long_context.py                                  # the full run on a GPU
    python benchmarks/long_context.py --kernel_sweep                   # decode attention launch shapes only
    python benchmarks/long_context.py --fused_sweep 100,200            # the fused decode step's shapes only
    python benchmarks/long_context.py --device cpu --model tiny --weights bf16 --sizes 256,1024 \
        --long_prompts 512 --short_cache 256 --new_tokens 4          # a CPU smoke run
"""
from __future__ import annotations

import argparse
import gc
import sys
import time
from pathlib import Path

import torch
from tabulate import tabulate

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from llama import techniques  # noqa: E402
from llama.generate import compile_blocks, copy_bandwidth_gb_s, weight_bytes_per_step  # noqa: E402
from llama.model import ARCHITECTURES, Transformer  # noqa: E402

# variant -> (llama.model.KV_CACHES name, mask mode). The first three are the seed's methods.
VARIANTS = {
    "normal": ("model", "quadratic"),
    "kv-int8": ("int8", "quadratic"),
    "kv-int8+linear-mask": ("int8", "linear"),
    "kv-prefix (bf16)": ("prefix", "quadratic"),  # fused caches build no mask whatever is asked
    "kv-int8-fused": ("int8-fused", "quadratic"),
    "kv-fp8-fused": ("fp8-fused", "quadratic"),
    "kv-int4-fused": ("int4-fused", "quadratic"),
}
GB = 1e9


def build_model(name: str, device: torch.device, seed: int = 0) -> Transformer:
    torch.manual_seed(seed)
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    try:
        with torch.device(device):
            model = Transformer(ARCHITECTURES[name])
    finally:
        torch.set_default_dtype(default)
    return model.eval().requires_grad_(False)


def free_caches(model: Transformer) -> None:
    for layer in model.layers:
        layer.attention.kv_cache = None
    model.causal_mask = model.freqs_cis = None
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def prefill(model, tokens: torch.Tensor, chunk: int) -> torch.Tensor:
    """Chunked prefill: each chunk attends to the cache prefix; only the last logits are kept."""
    n = tokens.shape[1]
    with torch.compiler.set_stance("force_eager"):
        for a in range(0, n, chunk):
            b = min(a + chunk, n)
            logits = model(tokens[:, a:b], torch.arange(a, b, device=tokens.device))
    return logits[:, -1:]


def decode(model, first: torch.Tensor, start_pos: int, steps: int, device) -> float:
    """Greedy decode `steps` tokens from `start_pos`; returns seconds. On CUDA one step is captured
    in a graph and replayed; the position lives in a device tensor (no host sync per token)."""
    tok = first.argmax(-1).view(1, 1).clone()
    pos = torch.tensor([start_pos], device=device)
    if device.type != "cuda":
        t0 = time.perf_counter()
        for i in range(steps):
            pos.fill_(start_pos + i)
            tok = model(tok, pos).argmax(-1)
        return time.perf_counter() - t0
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(2):  # warm-up: torch.compile and Triton compile, allocator settles
            model(tok, pos)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        logits = model(tok, pos)
    sync(device)
    t0 = time.perf_counter()
    for i in range(steps):
        pos.fill_(start_pos + i)
        graph.replay()
        tok.copy_(logits[:, -1].argmax(-1, keepdim=True))
    sync(device)
    return time.perf_counter() - t0


def run_case(model, variant, cache_size, prompt_len, new_tokens, chunk, device, bandwidth, weight_bytes):
    kv, mask = VARIANTS[variant]
    row = dict(variant=variant, cache=cache_size, prompt=prompt_len)
    free_caches(model)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    try:
        with torch.no_grad():
            model.setup_caches(1, cache_size, kv_cache=kv, mask=mask)
            gen = torch.Generator(device="cpu").manual_seed(1)
            tokens = torch.randint(0, model.config.vocab_size, (1, prompt_len), generator=gen).to(device)
            sync(device)
            t0 = time.perf_counter()
            last = prefill(model, tokens, chunk)
            last.argmax(-1).cpu()  # the first token, on the host
            row["ttft_s"] = time.perf_counter() - t0
            seconds = decode(model, last, prompt_len, new_tokens, device)
    except torch.OutOfMemoryError:
        row["status"] = "oom"
        free_caches(model)
        return row
    row["status"] = "ok"
    row["decode_tok_s"] = new_tokens / seconds
    context = prompt_len + new_tokens // 2  # mean context over the decode steps
    kv_bytes = sum(layer.attention.kv_cache.bytes_read_per_step(context) for layer in model.layers)
    row["GB/token"] = (weight_bytes + kv_bytes) / GB
    row["roofline_tok_s"] = bandwidth / (weight_bytes + kv_bytes)
    row["of_roofline"] = row["decode_tok_s"] / row["roofline_tok_s"]
    if device.type == "cuda":
        row["peak_alloc_GB"] = torch.cuda.max_memory_allocated() / GB
        row["peak_reserved_GB"] = torch.cuda.max_memory_reserved() / GB
    free_caches(model)
    return row


def logits_error(model, device, prompt_len=1024, steps=16, cache_size=2048):
    """Each KV format vs bf16 KV (the 'normal' cache) on the same tokens: prefill, then `steps`
    teacher-forced decode steps. Relative L2 error of the logits and top-1 agreement."""
    gen = torch.Generator(device="cpu").manual_seed(2)
    tokens = torch.randint(0, model.config.vocab_size, (1, prompt_len + steps), generator=gen).to(device)

    def run(variant):
        kv, mask = VARIANTS[variant]
        free_caches(model)
        model.setup_caches(1, cache_size, kv_cache=kv, mask=mask)
        with torch.no_grad():
            out = [model(tokens[:, :prompt_len], torch.arange(prompt_len, device=device))[:, -1:]]
            for i in range(prompt_len, prompt_len + steps):
                out.append(model(tokens[:, i:i + 1], torch.tensor([i], device=device)))
        free_caches(model)
        return torch.cat(out, 1).float()

    ref = run("normal")
    rows = []
    for variant in ("kv-int8", "kv-prefix (bf16)", "kv-int8-fused", "kv-fp8-fused", "kv-int4-fused"):
        got = run(variant)
        rows.append(dict(variant=variant, logits_rel_err=((got - ref).norm() / ref.norm()).item(),
                         top1_agree=(got.argmax(-1) == ref.argmax(-1)).float().mean().item()))
    return rows


def kernel_sweep(model_name: str, device, bandwidth: float, context: int, out: list[str]) -> None:
    """Time the decode attention kernel alone for each KV format at one filled context, over launch
    shapes (BLOCK_N, num_warps, num_stages, then splits per KV head), as CUDA-graph replays; print
    GB/s of the prefix it reads against the copy bandwidth, and the best shape per format."""
    from triton.runtime.errors import OutOfResources
    from triton.testing import do_bench_cudagraph

    from llama.kernels import decode_attention as da
    cfg = ARCHITECTURES[model_name]
    hq, hkv, d = cfg.n_heads, cfg.n_kv_heads, cfg.head_dim
    rows, best = [], {}
    formats = (("int8", da.FMT_INT8), ("int4", da.FMT_INT4), ("bf16", da.FMT_MODEL))
    for name, fmt in formats:
        x = torch.randn(1, hkv, context, d, device=device, dtype=torch.bfloat16)
        kq, ks = da.quantize(x, fmt)
        vq, vs = da.quantize(x.flip(2), fmt)
        del x
        q = torch.randn(1, hq, 1, d, device=device, dtype=torch.bfloat16)
        pos = torch.tensor([context - 1], device=device)
        ref = da.attention_reference(q, kq, vq, ks, vs, pos, fmt)
        nbytes = sum(t.numel() * t.element_size() for t in (kq, vq, ks, vs) if t is not None)

        def time_config(c):
            try:
                out_ = da.attention_kernel(q, kq, vq, ks, vs, pos, fmt, config=list(c))
            except OutOfResources as e:  # a tile that needs more shared memory than the SM has
                print(f"attention {name} config {c}: skipped ({e})", flush=True)
                return float("inf")
            err = ((out_.float() - ref.float()).norm() / ref.float().norm()).item()
            if not err < 1e-2:
                raise SystemExit(f"attention {name} config {c}: relative error {err:.2e} vs reference")
            ms = do_bench_cudagraph(lambda: da.attention_kernel(q, kq, vq, ks, vs, pos, fmt, config=list(c)),
                                    rep=30, return_mode="median")
            row = dict(format=name, context=context, block_n=c[1], warps=c[2], stages=c[3], splits=c[4],
                       us=1e3 * ms, GB_s=nbytes / ms / 1e6, of_copy=nbytes / ms / 1e6 / (bandwidth / GB))
            rows.append(row)
            print(row, flush=True)
            return ms

        shapes = [(16, bn, w, st, 64) for bn in (64, 128, 256) for w in (4, 8) for st in (2, 3, 4)]
        times = {c: time_config(c) for c in shapes}
        c0 = min(times, key=times.get)
        for splits in (1, 2, 4, 16, 32, 128, 256):  # 1-4: a short cache (decode_splits)
            c = c0[:4] + (splits,)
            times[c] = time_config(c)
        best[name] = min(times, key=times.get)
        torch.cuda.empty_cache()
    show(f"decode attention kernel alone, filled context {context} (one layer: B=1, {hq} q heads, {hkv} KV heads)",
         rows, out)
    current = {name: da.DECODE_CONFIGS[fmt] for name, fmt in formats}
    show("best decode launch shape per format (BLOCK_M, BLOCK_N, warps, stages, splits)",
         [dict(format=n, best=str(c), best_GB_s=next(r["GB_s"] for r in rows if r["format"] == n and
                                                   (16, r["block_n"], r["warps"], r["stages"], r["splits"]) == c),
               current=str(current[n])) for n, c in best.items()], out)


def fused_sweep(model_name: str, device, cache_size: int, contexts: list[int], out: list[str]) -> None:
    """Time the fused decode step (RoPE, cache write and attention of one token: one layer of
    decode_attention.decode_step_attention) alone at each filled context of a `cache_size`-slot bf16
    cache, over launch shapes (BLOCK_N, num_warps, num_stages), as CUDA-graph replays; print
    microseconds, the best shape per context, and the default's time."""
    from triton.runtime.errors import OutOfResources
    from triton.testing import do_bench_cudagraph

    from llama.kernels import decode_attention as da
    cfg = ARCHITECTURES[model_name]
    hq, hkv, d = cfg.n_heads, cfg.n_kv_heads, cfg.head_dim
    g = torch.Generator(device=device).manual_seed(0)
    k_cache, v_cache = (torch.randn(1, hkv, cache_size, d, device=device, dtype=torch.bfloat16, generator=g)
                        for _ in range(2))
    qkv = torch.randn(1, 1, (hq + 2 * hkv) * d, device=device, dtype=torch.bfloat16, generator=g)
    freqs = torch.randn(1, d // 2, 2, device=device, dtype=torch.bfloat16, generator=g)
    rows, best = [], []
    shapes = [(bn, w, st) for bn in (32, 64, 128, 256) for w in (2, 4, 8) for st in (1, 2, 3)]
    for context in contexts:
        pos = torch.tensor([context - 1], device=device)
        ref = da.decode_step_attention(qkv, k_cache, v_cache, freqs, pos, hq)
        times = {}
        for shape in shapes:
            run = lambda: da.decode_step_attention(qkv, k_cache, v_cache, freqs, pos, hq, list(shape))  # noqa: E731
            try:
                got = run()
            except OutOfResources as e:
                print(f"fused step {shape}: skipped ({e})", flush=True)
                continue
            err = ((got.float() - ref.float()).norm() / ref.float().norm()).item()
            if not err < 1e-2:
                raise SystemExit(f"fused step {shape}: relative error {err:.2e} against the default shape")
            times[shape] = us = 1e3 * do_bench_cudagraph(run, rep=30, return_mode="median")
            rows.append(dict(context=context, block_n=shape[0], warps=shape[1], stages=shape[2], us=us))
            print(rows[-1], flush=True)
        default = tuple(da.FUSED_DECODE_CONFIG)
        c = min(times, key=times.get)
        best.append(dict(context=context, best=str(c), best_us=times[c], default=str(default),
                         default_us=times.get(default)))
    show(f"fused decode step alone (one layer: B=1, {hq} q heads, {hkv} KV heads, a {cache_size}-slot cache)",
         rows, out)
    show("best fused decode step shape per context (BLOCK_N, warps, stages)", best, out)

def show(title, rows, out):
    text = f"\n### {title}\n\n" + tabulate(rows, headers="keys", tablefmt="github", floatfmt=".3g")
    print(text, flush=True)
    out.append(text)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="meta-llama/Llama-3.1-8B", choices=list(ARCHITECTURES))
    p.add_argument("--device", default="cuda")
    p.add_argument("--weights", default="bf16,int4wo-64", help="comma list: bf16 and/or int4wo-64 (in that order)")
    p.add_argument("--sizes", default="8192,16384,32768,65536,131072", help="cache sizes for the sweep")
    p.add_argument("--short_cache", type=int, default=1024, help="the short cache for the capacity check")
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--bf16_variants", default="normal,kv-int8,kv-int8+linear-mask,kv-int8-fused",
                   help="variants run with bf16 weights (at the largest size only)")
    p.add_argument("--long_prompts", default="32768,130944", help="prompt lengths for real long prompts")
    p.add_argument("--long_variants", default="kv-int8-fused,kv-int4-fused")
    p.add_argument("--long_weights", default="bf16",
                   help="weights for the long prompts, run last on a fresh model (torchao's int4 matmul is slow at prefill sizes)")
    p.add_argument("--prompt", type=int, default=128, help="short prompt for the sweep")
    p.add_argument("--new_tokens", type=int, default=32)
    p.add_argument("--chunk", type=int, default=8192, help="prefill chunk (tokens)")
    p.add_argument("--compile", choices=("block", "none"), default="none",
                   help="decode: run each block eager (default) or compiled (fused RMSNorm/RoPE/residual); either "
                        "way the step is replayed from a CUDA graph on GPU. At a 130944-token prompt with int8 KV "
                        "on an H200 compiled decoded 112.7 tok/s, eager 82.1 (docs/performance.md); the default "
                        "stays eager so the committed tables keep their command")
    p.add_argument("--kernel_sweep", type=int, nargs="?", const=131072, metavar="CONTEXT",
                   help="time the decode attention kernel alone at this context (default 131072) and exit")
    p.add_argument("--fused_sweep", metavar="CONTEXTS",
                   help="comma list of filled contexts: time the fused decode step (RoPE, cache write, attention) "
                        "alone over launch shapes, with a --fused_sweep_cache-slot cache, and exit")
    p.add_argument("--fused_sweep_cache", type=int, default=208)
    p.add_argument("--out", default=None, help="also write the tables to this file")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        p.error("no CUDA device here; pass --device cpu (with --model tiny) for a smoke run")
    unknown = set(args.variants.split(",") + args.long_variants.split(",")) - set(VARIANTS)
    if unknown:
        p.error(f"unknown variants {sorted(unknown)}; known: {', '.join(VARIANTS)}")
    sizes = [int(s) for s in args.sizes.split(",")]
    tables: list[str] = []
    bandwidth = copy_bandwidth_gb_s(device, 1 << 30 if device.type == "cuda" else 1 << 27, 10) * 1e9
    print(f"# {args.model} synthetic, {device} "
          f"{torch.cuda.get_device_name(device) if device.type == 'cuda' else ''}, copy bandwidth {bandwidth / GB:.0f} GB/s",
          flush=True)
    if args.kernel_sweep or args.fused_sweep:
        if args.kernel_sweep:
            kernel_sweep(args.model, device, bandwidth, args.kernel_sweep, tables)
        if args.fused_sweep:
            fused_sweep(args.model, device, args.fused_sweep_cache, [int(c) for c in args.fused_sweep.split(",")],
                        tables)
        if args.out:
            Path(args.out).write_text("\n".join(tables) + "\n")
        return
    model = build_model(args.model, device)
    if args.compile == "block":
        # One recompile per cache variant and size here, never a fall-back to eager.
        torch._dynamo.config.recompile_limit = 1024
        torch._dynamo.config.accumulated_recompile_limit = 4096
        compile_blocks(model)

    for weights in [w for w in args.weights.split(",") if w]:
        if weights == "int4wo-64":
            t0 = time.perf_counter()
            techniques.apply(model, "int4wo-64", device, torch.bfloat16)
            print(f"# int4wo-64 quantization {time.perf_counter() - t0:.1f} s", flush=True)
        elif weights != "bf16":
            p.error(f"--weights: bf16 or int4wo-64, not {weights!r}")
        wbytes = weight_bytes_per_step(model, 1)
        print(f"# {weights}: weights read per token {wbytes / GB:.2f} GB", flush=True)
        if weights == "bf16":
            rows = [run_case(model, v, max(sizes), args.prompt, args.new_tokens, args.chunk, device, bandwidth, wbytes)
                    for v in args.bf16_variants.split(",") if v]
            show(f"bf16 weights, cache {max(sizes)}, prompt {args.prompt}", rows, tables)
            show("KV format accuracy (bf16 weights): logits vs bf16 KV, same tokens", logits_error(model, device), tables)
            continue
        rows = []
        for size in [args.short_cache] + sizes:
            for v in args.variants.split(","):
                rows.append(run_case(model, v, size, args.prompt, args.new_tokens, args.chunk, device, bandwidth, wbytes))
                print(rows[-1], flush=True)
        show(f"{weights} weights, prompt {args.prompt}, {args.new_tokens} new tokens", rows, tables)
        short = {r["variant"]: r.get("decode_tok_s") for r in rows if r["cache"] == args.short_cache}
        capacity = [dict(variant=r["variant"], short_cache_tok_s=short[r["variant"]], big_cache_tok_s=r.get("decode_tok_s"),
                         ratio=(r.get("decode_tok_s") or 0) / short[r["variant"]] if short.get(r["variant"]) else None)
                    for r in rows if r["cache"] == max(sizes)]
        show(f"capacity: cache {max(sizes)} vs {args.short_cache}, same short prompt", capacity, tables)
    long_prompts = [int(s) for s in args.long_prompts.split(",") if s]
    if long_prompts:
        del model
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        model = build_model(args.model, device)
        if args.compile == "block":
            compile_blocks(model)
        if args.long_weights == "int4wo-64":
            techniques.apply(model, "int4wo-64", device, torch.bfloat16)
        wbytes = weight_bytes_per_step(model, 1)
        long_rows = []
        for n in long_prompts:
            cache = -(-(n + args.new_tokens + 1) // 128) * 128
            for v in args.long_variants.split(","):
                long_rows.append(run_case(model, v, cache, n, args.new_tokens, args.chunk, device, bandwidth, wbytes))
                print(long_rows[-1], flush=True)
        show(f"{args.long_weights} weights, real long prompts (chunked prefill, chunk {args.chunk})", long_rows, tables)
    if args.out:
        Path(args.out).write_text("\n".join(tables) + "\n")


if __name__ == "__main__":
    main()
