"""Where a CUDA-graph-replayed decode step spends its time: the kernels' own start and end times.

Summing kernel durations (profile_decode_step.py) cannot show what programmatic dependent launch
(PDL, llama/kernels/pdl.py) does: a GEMV launched with it starts, and issues its first weight loads,
while the kernel before it still runs. So this module profiles a few replays of the graph and cuts
the step's time into spans by which kernels are running:

  gemv       only GEMVs (the weights streaming: the time the roofline counts)
  overlap    a GEMV started early (PDL) while another kernel still runs
  attention  only the decode-step / attention kernels
  other      only other kernels (inductor's RMSNorms, split-K sums, argmax, copies)
  idle       no kernel at all (launch gaps between kernels)

The profiler slows each graph launch (bf16 on an H200: 4.35-5.6 ms from one replay's start to the
next, against 4.0-4.1 ms a token unprofiled; twelfth session), so the time between replays is left out.

Every span but gemv and overlap is time in which the weights do not stream, so at batch 1 it is what
keeps decode from the bandwidth roofline. decode_roofline.py --timeline adds this to each ours row.
"""
from __future__ import annotations

SPANS = ("gemv", "overlap", "attention", "other", "idle")


def kernel_class(name: str) -> str:
    """gemv, attention or other, by the kernel's name: our Triton kernels, cuBLAS's. Inductor's
    (triton_*) are other: their names list the ops they fuse, a GEMV's output among them."""
    if name.startswith("triton_"):
        return "other"
    if "gemv" in name or "gemm" in name or "nvjet" in name:
        return "gemv"
    if "decode_step" in name or "attention" in name or "flash" in name:
        return "attention"
    return "other"


def summarize(kernels: list[tuple[str, float, float]], steps: int, layers: int) -> dict:
    """kernels: (name, start µs, end µs) of `steps` replays of one decode step of `layers` layers,
    each replay the same number of kernels. Returns µs per step for the whole step (first start to
    last end of each replay: the profiler's own gaps between replays left out) and each span (SPANS),
    µs per layer for each span (the head and sampling averaged in), and the kernel count per step."""
    if not kernels or steps < 1 or len(kernels) % steps:
        raise ValueError(f"{len(kernels)} kernels are not {steps} replays of one step")
    kernels = sorted(kernels, key=lambda k: k[1])
    per_step = len(kernels) // steps
    totals = dict.fromkeys(SPANS, 0.0)
    for i in range(0, len(kernels), per_step):
        _add_spans(kernels[i:i + per_step], totals)
    step_us = sum(totals.values()) / steps
    return {"step_us": round(step_us, 2), "kernels_per_step": per_step,
            **{f"{span}_us": round(totals[span] / steps, 2) for span in SPANS},
            **{f"{span}_us_per_layer": round(totals[span] / steps / layers, 3) for span in SPANS}}


def _add_spans(kernels: list[tuple[str, float, float]], totals: dict) -> None:
    # Sweep over every start and end: in each elementary interval, which classes are running.
    edges = sorted({t for _, start, end in kernels for t in (start, end)})
    for lo, hi in zip(edges, edges[1:]):
        running = {kernel_class(name) for name, start, end in kernels if start <= lo and end >= hi}
        if not running:
            span = "idle"
        elif running == {"gemv"}:
            span = "gemv"
        elif "gemv" in running:
            span = "overlap"
        elif running == {"attention"}:
            span = "attention"
        else:
            span = "other"
        totals[span] += hi - lo


def sequence(kernels: list[tuple[str, float, float]], first: int, count: int) -> str:
    """`count` kernels from the `first`-th (by start), one a line: start (from the first listed),
    duration and gap since the previous one ended (negative: it started before that end), in µs."""
    kernels = sorted(kernels, key=lambda k: k[1])[first:first + count]
    lines, t0, prev_end = [], kernels[0][1], kernels[0][1]
    for name, start, end in kernels:
        lines.append(f"  {start - t0:8.2f} {end - start:7.2f} {start - prev_end:+7.2f}  {name[:90]}")
        prev_end = max(prev_end, end)
    return "\n".join(["     start     dur     gap  kernel (µs)"] + lines)


def profile_replays(run) -> list[tuple[str, float, float]]:
    """The CUDA kernels (name, start µs, end µs) that `run()` launches: replays of a decode step's
    graph and nothing else, for summarize."""
    import torch
    from torch.profiler import ProfilerActivity, profile
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        run()
        torch.cuda.synchronize()
    return [(e.name, e.time_range.start, e.time_range.end) for e in prof.events()
            if e.device_type == torch.autograd.DeviceType.CUDA and e.time_range.end > e.time_range.start]
