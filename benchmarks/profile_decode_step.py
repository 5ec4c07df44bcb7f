"""Per-kernel GPU time of one decode step, eager blocks against compiled blocks (--compile block's
compile_blocks), for each KV cache at a given decode position: where decode loses time.

Llama-3.1-8B layer shapes with fewer layers (--layers), random bf16 weights (--scheme: swapped for
our weight-only GEMV linears), batch 1, a cache of --cache_size slots; the step is decode_one_token
at position P (the cache holds zeros; the fused caches' attention reads slots 0..P, so P sets the
context it reads). "wall" runs the step without a CUDA graph, so it includes launches; "graph"
replays the step captured in one CUDA graph (as --compile block decodes), so graph minus the
kernels' sum is the time between kernels.

    python benchmarks/profile_decode_step.py --kv_caches int8-fused,fp8-fused,int4-fused --positions 130000
    python benchmarks/profile_decode_step.py --scheme int8 --kv_caches model,prefix --positions 200 --cache_size 208

On CUDA each case also splits the GEMV kernels' time by linear (wqkv, wo, w13, w2, output), with
the GB/s each reaches inside the step.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from llama.generate import compile_step, decode_one_token, inductor_config, sample  # noqa: E402
from llama.kernels import gemv  # noqa: E402
from llama.model import ARCHITECTURES, KV_CACHES, Transformer  # noqa: E402
from llama.techniques import storage_bytes  # noqa: E402


def graph_ms(step, steps: int) -> float:
    """One decode step captured in a CUDA graph and replayed: its time per step with no launches."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        step()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        step()
    graph.replay()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        graph.replay()
    torch.cuda.synchronize()
    return (time.perf_counter() - start) / steps * 1e3


LINEARS = ("attention.wqkv", "attention.wo", "feed_forward.w13", "feed_forward.w2")  # launch order in a layer
GEMV_KERNELS = ("gemv", "gemm", "nvjet")  # our GEMV kernels, cuBLAS's


def per_linear(prof, model: Transformer, steps: int) -> str:
    """GEMV time per step and GB/s by linear. A step launches one GEMV per linear, in order (each
    layer's LINEARS, then the output head), so the kernels are told apart by their place. Why: the
    GEMV sweep times each matrix alone; in the step a kernel follows others and can lose time that
    the sweep never sees (docs/performance.md, sixth H200 session)."""
    names = [n for _ in model.layers for n in LINEARS] + ["output"]
    kernels = sorted((e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA
                      and any(k in e.name for k in GEMV_KERNELS)), key=lambda e: e.time_range.start)
    if len(kernels) != len(names) * steps:
        return f"  per linear: {len(kernels)} GEMV launches in {steps} steps, not {len(names)} per step; not split"
    us = dict.fromkeys(LINEARS + ("output",), 0.0)
    for i, e in enumerate(kernels):
        us[names[i % len(names)]] += e.device_time_total / steps
    modules = dict(model.named_modules())
    lines = []
    for name, t in us.items():
        module = modules[name if name == "output" else f"layers.0.{name}"]
        count = 1 if name == "output" else len(model.layers)
        nbytes = count * sum(map(storage_bytes, [*module.buffers(), *module.parameters()]))
        lines.append(f"  {t / 1e3:8.3f} ms  {name:17s} {nbytes / (t * 1e-6) / 1e9:6.0f} GB/s")
    return "\n".join(["  per linear (GEMV kernel time per step, weight bytes over it):"] + lines)


def profile_step(args, kv_cache: str, pos: int, compiled: bool, device: torch.device) -> None:
    torch._dynamo.reset()
    cfg = dataclasses.replace(ARCHITECTURES[args.model], n_layers=args.layers)
    with device:
        torch.manual_seed(0)
        model = Transformer(cfg).to(torch.bfloat16).eval()
        if args.scheme != "linear":
            gemv.quantize_linears(model, args.scheme, args.group)
        model.setup_caches(1, args.cache_size, kv_cache=kv_cache)
    sample_fn = compile_step(model, args.forward == "whole") if compiled else sample  # as GraphedDecode does
    cuda = device.type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    token = torch.zeros(1, 1, dtype=torch.long, device=device)
    input_pos = torch.tensor([pos], device=device)
    step = lambda: decode_one_token(model, token, input_pos, 0.0, None, sample_fn)  # noqa: E731
    with torch.no_grad(), torch._inductor.config.patch(inductor_config(model)):  # as llama.generate compiles
        for _ in range(3):  # compile and warm up
            step()
        sync()
        start = time.perf_counter()
        for _ in range(args.steps):
            step()
        sync()
        wall_ms = (time.perf_counter() - start) / args.steps * 1e3
        with profile(activities=[ProfilerActivity.CUDA if cuda else ProfilerActivity.CPU]) as prof:
            for _ in range(args.steps):
                step()
            sync()
        graphed = f", graph {graph_ms(step, 10 * args.steps):.3f} ms/step" if cuda else ""
    kernel_us = (lambda e: e.device_time_total) if cuda else (lambda e: e.self_cpu_time_total)
    events = sorted(prof.key_averages(), key=lambda e: -kernel_us(e))
    total_ms = sum(map(kernel_us, events)) / args.steps / 1e3
    print(f"\n== weights {args.scheme}, cache {kv_cache} pos {pos} "
          f"{f'compiled ({args.forward})' if compiled else 'eager'}: "
          f"wall {wall_ms:.3f} ms/step{graphed}, {'GPU kernels' if cuda else 'CPU ops'} {total_ms:.3f} ms/step "
          f"({args.layers} layers)")
    for e in events[:args.top]:
        print(f"  {kernel_us(e) / args.steps / 1e3:8.3f} ms  x{e.count // args.steps:3d}  {e.key[:110]}")
    if cuda:
        print(per_linear(prof, model, args.steps))


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="meta-llama/Llama-3.1-8B", choices=sorted(ARCHITECTURES))
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--kv_caches", default="int8-fused", help=f"comma list of {', '.join(KV_CACHES)}")
    p.add_argument("--positions", default="130000,200", help="comma list of decode positions")
    p.add_argument("--cache_size", type=int, default=131072)
    p.add_argument("--scheme", default="linear", choices=["linear", *gemv.SCHEMES],
                   help="linear: the bf16 nn.Linear; else our GEMV linears of llama/kernels/gemv.py with that "
                        "scheme (none: bf16 weights on our kernel)")
    p.add_argument("--group", type=int, default=128, help="int4 group size")
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--top", type=int, default=10, help="kernels listed per case")
    p.add_argument("--device", default="cuda")
    p.add_argument("--forward", choices=("blocks", "whole"), default="blocks",
                   help="compiled case: each block compiled (--compile block), or the forward as one graph "
                        "(GraphedDecode's whole_step, decode_roofline.py's bf16 ours)")
    p.add_argument("--gemv_configs", help="JSON of GEMV_CONFIGS entries to use (gemv_sweep.py writes OUT/gemv_configs.json)")
    args = p.parse_args(argv)
    if args.gemv_configs:
        try:
            print(f"GEMV_CONFIGS from {args.gemv_configs}: {gemv.apply_configs(args.gemv_configs)}", flush=True)
        except ValueError as e:
            p.error(f"--gemv_configs {e}")
    unknown = [c for c in args.kv_caches.split(",") if c not in KV_CACHES]
    if unknown:
        p.error(f"unknown KV cache(s) {unknown}; known: {', '.join(KV_CACHES)}")
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        p.error("CUDA is not available here; --device cpu --model tiny for a smoke run")
    for kv_cache in args.kv_caches.split(","):
        for pos in map(int, args.positions.split(",")):
            for compiled in (False, True):
                profile_step(args, kv_cache, pos, compiled, device)


if __name__ == "__main__":
    main()
