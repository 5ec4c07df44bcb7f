"""The generate benchmark, gpt-fast style: prefill, then one compiled decode step per token.

    python -m llama.generate --checkpoint DIR --technique int4wo-64+kv-int8 --out run.json --compile block

Writes ONE result JSON (schema: GENERATE_FIELDS in llama/results.py) and prints a summary.
Out-of-memory and unsupported techniques are results (status oom / unsupported, exit 0) so a
sweep goes on; bad input (unknown technique, a context that doesn't fit) is a one-line error, exit 2.

Numbers, per timed sample after warm-up:
  TTFT            prefill + sampling the first token
  decode tok/s    batch x (max_new_tokens - 1) / time of the decode steps
  tok/s           batch x max_new_tokens / (prefill + decode time)
  bytes_per_token bytes one decode step reads: every weight as stored (the embedding table only one
                  row per sequence) + the KV bytes the cache reads (KVCache.bytes_read_per_step),
                  averaged over the decode steps; bandwidth = bytes_per_token x decode steps/s
"""
from __future__ import annotations

import argparse
import resource
import shlex
import statistics
import sys
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable, Optional

import torch
import torch.nn.functional as F
import torch._inductor.config  # INDUCTOR_CONFIG below
from torch import Tensor

from llama import results, techniques
from llama.checkpoint import DTYPES
from llama.gpus import resolve_device
from llama.tokenizer import load_tokenizer
from llama.model import Transformer

# One inductor setup for every technique, so compiled numbers compare like with like: torchao's
# recommended settings (torchao.quantization.utils.recommended_inductor_config_setter), which its
# configs would otherwise switch on for quantized runs only (llama/techniques.py turns that off).
INDUCTOR_CONFIG = {"coordinate_descent_tuning": True, "coordinate_descent_check_all_directions": True,
                   "force_fuse_int_mm_with_mul": True, "fx_graph_cache": True, "triton.unique_kernel_names": True}
COMPILE_MODES = ("none", "full", "block", "graph")  # Settings.compile: see --compile's help
CACHE_ROUNDING = 128  # default cache_size is rounded up to this, so nearby prompt lengths share a compiled graph


class ContextError(ValueError):
    """The requested context does not fit the cache or the model."""


@dataclass(frozen=True)
class Settings:
    batch_size: int = 1
    max_new_tokens: int = 200
    num_samples: int = 5
    warmup: int = 1
    cache_size: Optional[int] = None
    temperature: float = 0.8
    top_k: Optional[int] = 200
    compile: str = "none"  # one of COMPILE_MODES
    compile_prefill: bool = False

    def __post_init__(self):
        if self.compile not in COMPILE_MODES:  # e.g. the old compile=True, which would decode eagerly
            raise ValueError(f"compile must be one of {COMPILE_MODES}, not {self.compile!r}")


# ----------------------------------------------------------------------------- sampling and steps

ARGMAX_CHUNK = 1024


def argmax(x: Tensor) -> Tensor:
    """torch.argmax(x, -1, keepdim=True) of (B, V) in two parallel stages: the max of each chunk of
    ARGMAX_CHUNK entries, then the first chunk holding the largest (so ties go to the first index, as
    torch's). Inductor runs an argmax as one reduction that it does not split: 18 us per token on one
    SM for Llama 3's 128256 logits (H200, benchmarks/profile_decode_step.py)."""
    pad = -x.shape[-1] % ARGMAX_CHUNK
    chunks = F.pad(x, (0, pad), value=-float("inf")).view(x.shape[0], -1, ARGMAX_CHUNK)
    values, within = chunks.max(-1)
    chunk = values.argmax(-1, keepdim=True)
    return chunk * ARGMAX_CHUNK + within.gather(-1, chunk)


def sample(logits: Tensor, temperature: float, top_k: Optional[int]) -> Tensor:
    """logits (B, V) -> next tokens (B, 1), on the device, with no host sync."""
    if temperature <= 0:
        return argmax(logits)
    logits = logits.float() / temperature
    if top_k is not None:
        pivot = torch.topk(logits, min(top_k, logits.size(-1))).values[..., -1:]
        logits = torch.where(logits < pivot, -float("inf"), logits)
    probs = torch.softmax(logits, dim=-1)
    # argmax(p / Exp(1)) is a draw from p (the exponential race); torch.multinomial would sync.
    race = torch.empty_like(probs).exponential_(1)
    return argmax(probs / race)


def prefill(model: Transformer, tokens: Tensor, input_pos: Tensor, temperature: float, top_k: Optional[int]) -> Tensor:
    return sample(model(tokens, input_pos)[:, -1], temperature, top_k)


# Uncompiled prefill. "force_eager" also keeps it out of --compile block's compiled blocks, which
# would otherwise compile again for the prompt's shape.
eager_prefill = torch.compiler.set_stance("force_eager")(prefill)


def decode_one_token(model: Transformer, token: Tensor, input_pos: Tensor, temperature: float,
                     top_k: Optional[int], sample_fn: Callable = sample) -> Tensor:
    return sample_fn(model(token, input_pos)[:, -1], temperature, top_k)


def decode_loop(model: Transformer, decode_fn: Callable, temperature: float, top_k: Optional[int],
                token: Tensor, prompt_len: int, steps: int) -> Tensor:
    """--compile none / full: one decode_fn call per token. `token` (B, 1) sits at position
    prompt_len; returns it and the `steps` tokens after it, (B, steps + 1)."""
    input_pos = torch.full((1,), prompt_len, device=token.device)
    new_tokens = [token]
    for _ in range(steps):
        # clone: under CUDA graphs the step's output buffer is overwritten by the next replay.
        token = decode_fn(model, token, input_pos, temperature, top_k).clone()
        input_pos += 1
        new_tokens.append(token)
    return torch.cat(new_tokens, dim=1)


def compile_blocks(model: Transformer) -> None:
    """Each TransformerBlock and the final norm compiled with mode "default": one compiled block
    serves every layer (blocks of one model differ only in their weights)."""
    for layer in model.layers:
        layer.compile()
    model.norm.compile()


def compile_step(model: Transformer, whole: bool = False) -> Callable:
    """--compile block's compiling: the blocks (compile_blocks), or with `whole` the model's forward
    as one graph (kernels may then fuse across blocks; longer warm-up), and the sampling; returns
    the compiled sample function for decode_one_token."""
    if whole:
        model.compile()
    else:
        compile_blocks(model)
    # Eager, greedy sampling is one single-block ATen argmax over the whole vocabulary (29-36 us per
    # token at 128256 entries on an H200); inductor splits the reduction (a few us).
    # dynamic=False: the logits' shape, temperature and top_k are fixed for the decoder's life.
    return torch.compile(sample, dynamic=False)


class GraphedDecode:
    """--compile block: each TransformerBlock compiled once with mode "default" (one compiled block
    serves every layer, so warm-up takes seconds, not the minutes of compiling the whole step with
    reduce-overhead), model.norm and the sampling compiled too, and on CUDA the whole decode step --
    all blocks, the head, sampling, writing the token, position += 1 -- captured in ONE CUDA graph on
    the first call and replayed per token, with no host work between tokens. On CPU the step runs in
    a Python loop. Build it after model.setup_caches(); compiled=False (--compile graph) keeps the
    blocks and the sampling eager and the one graph per step."""

    def __init__(self, model: Transformer, temperature: float, top_k: Optional[int], compiled: bool = True,
                 whole_step: bool = False):
        self.model, self.temperature, self.top_k, self.graph = model, temperature, top_k, None
        self.sample = compile_step(model, whole_step) if compiled else sample
        device = model.tok_embeddings.weight.device
        self.token = torch.zeros(model.max_batch_size, 1, dtype=torch.long, device=device)
        self.pos = torch.zeros(1, dtype=torch.long, device=device)
        self.out = torch.zeros(model.max_batch_size, model.cache_size, dtype=torch.long, device=device)  # by position

    def _step(self) -> None:
        # Device-only: the next token, its slot in `out` and the position move on inside the graph.
        token = decode_one_token(self.model, self.token, self.pos, self.temperature, self.top_k, self.sample)
        self.out.index_copy_(1, self.pos + 1, token)
        self.token.copy_(token)
        self.pos.add_(1)

    def _capture(self, token: Tensor, prompt_len: int) -> None:
        with torch.cuda.device(token.device):
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):
                for _ in range(3):  # compile, autotune and initialize libraries outside the capture
                    self.token.copy_(token)
                    self.pos.fill_(prompt_len)  # the same cache slot each time: none past the cache
                    self._step()
            torch.cuda.current_stream().wait_stream(stream)
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph):
                self._step()

    def decode(self, token: Tensor, prompt_len: int, steps: int) -> Tensor:
        """`token` (B, 1) sits at position prompt_len; returns it and the `steps` tokens after it."""
        if token.is_cuda and self.graph is None:
            self._capture(token, prompt_len)
        self.token.copy_(token)
        self.pos.fill_(prompt_len)
        for _ in range(steps):
            self.graph.replay() if self.graph is not None else self._step()
        return torch.cat([token, self.out[:, prompt_len + 1:prompt_len + 1 + steps]], dim=1)


def generate_once(model: Transformer, prompt: Tensor, settings: Settings, prefill_fn: Callable,
                  decode: Callable[[Tensor, int, int], Tensor], sync: Callable[[], None]) -> tuple[Tensor, float, float]:
    """One sample. Returns (tokens (B, max_new_tokens), ttft seconds, decode seconds).
    Syncs only around the timed regions; decode never waits on the device."""
    prompt_len = prompt.shape[1]
    prompt_pos = torch.arange(prompt_len, device=prompt.device)
    sync()
    start = time.perf_counter()
    token = prefill_fn(model, prompt, prompt_pos, settings.temperature, settings.top_k)
    sync()
    first = time.perf_counter()
    tokens = decode(token, prompt_len, settings.max_new_tokens - 1)
    sync()
    end = time.perf_counter()
    return tokens, first - start, end - first


# ----------------------------------------------------------------------------- measuring

def kernel_settings(model: Transformer) -> dict:
    """GENERATE_FIELDS' kernel_settings: what our kernels run with in this process, and the inductor
    settings `model` compiles with besides INDUCTOR_CONFIG (inductor_config)."""
    from llama.kernels import decode_attention, gemv, pdl
    return {"gemv_configs": {kind: list(entry) for kind, entry in gemv.GEMV_CONFIGS.items()},
            "pdl_kernels": sorted(pdl.KERNELS), "decode_step_flags": decode_attention.step_flags_on(),
            "inductor": gemv.inductor_settings(model)}


def inductor_config(model: Transformer) -> dict:
    """INDUCTOR_CONFIG, with the changes our GEMV linears ask for (gemv.inductor_settings)."""
    from llama.kernels import gemv
    return {**INDUCTOR_CONFIG, **gemv.inductor_settings(model)}


def copy_bandwidth_gb_s(device: torch.device, nbytes: int, iters: int) -> float:
    """Device-to-device copy, counting bytes read plus written (the roofline for decode)."""
    src = torch.ones(nbytes, dtype=torch.uint8, device=device)  # written, so no zero-page reads on CPU
    dst = torch.empty_like(src)
    dst.copy_(src)  # warm: faults in dst's pages, wakes the clocks
    _sync(device)
    start = time.perf_counter()
    for _ in range(iters):
        dst.copy_(src)
    _sync(device)
    seconds = time.perf_counter() - start
    del src, dst
    return 2 * nbytes * iters / seconds / 1e9


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class PeakMemory:
    """Peak memory over a region. CUDA: the caching allocator's max allocated / reserved.
    CPU: there is no allocator to ask, so allocated = the process's peak RSS over the region
    (Linux VmHWM, reset through /proc/self/clear_refs) and reserved = its peak RSS over the
    whole run (getrusage); both include the interpreter and libraries, not just tensors."""

    def __init__(self, device: torch.device):
        self.device = device
        self.source = ("torch.cuda.max_memory_allocated/max_memory_reserved over the timed samples"
                       if device.type == "cuda" else
                       "process peak RSS: alloc = VmHWM over the timed samples, reserved = whole run")

    def __enter__(self):
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            try:
                Path("/proc/self/clear_refs").write_text("5")
            except OSError:
                self.source += " (VmHWM reset unavailable: alloc is the peak since process start)"
        return self

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            self.alloc = torch.cuda.max_memory_allocated(self.device)
            self.reserved = torch.cuda.max_memory_reserved(self.device)
        else:
            lifetime = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
            self.alloc = _vm_hwm_bytes() or lifetime
            self.reserved = max(lifetime, self.alloc)  # the two counters differ by a few pages


def _vm_hwm_bytes() -> Optional[int]:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def weight_bytes_per_step(model: Transformer, batch_size: int) -> int:
    """Weights one decode step reads: all of them as stored, except that the embedding lookup
    reads one row per sequence. With tied embeddings the output projection reads the table anyway."""
    table = model.tok_embeddings.weight
    total = techniques.model_size_bytes(model)
    row = techniques.storage_bytes(table) // table.shape[0]
    tied = getattr(model.output, "weight", None) is table  # our Triton linears have no .weight
    return total - (0 if tied else techniques.storage_bytes(table)) + batch_size * row


def kv_bytes(model: Transformer) -> tuple[int, Callable[[int], int]]:
    caches = [layer.attention.kv_cache for layer in model.layers]
    stored = sum(b.numel() * b.element_size() for c in caches for b in c.buffers())
    return stored, lambda context: sum(c.bytes_read_per_step(context) for c in caches)


def host_memory_available() -> int | None:
    """MemAvailable of /proc/meminfo in bytes; None where there is none (not Linux)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def check_host_memory(model: Transformer, batch_size: int, cache_size: int, options: techniques.RunOptions) -> None:
    """MemoryError (an oom result) if the KV caches and mask of a CPU run can't fit in the host's
    available memory. Why check first: where Linux overcommits memory (vm.overcommit_memory=1, as on
    the lent GPU hosts) any allocation succeeds, and the OOM killer ends the process when the caches'
    pages are zeroed, so no result is written."""
    available = host_memory_available()
    if available is None:
        return
    need = model.cache_bytes(batch_size, cache_size, kv_cache=options.kv_cache, mask=options.mask)
    if need > available:
        raise MemoryError(f"cannot allocate {need / 2**30:.1f} GiB of KV caches on the host: "
                          f"{available / 2**30:.1f} GiB available")


def _summary(values: list[float]) -> dict[str, float]:
    mean = statistics.fmean(values)
    return {"median": statistics.median(values), "min": min(values), "max": max(values),
            "cv": statistics.pstdev(values) / mean if mean else 0.0}


def resolve_cache_size(prompt_len: int, settings: Settings, max_seq_len: int) -> int:
    needed = prompt_len + settings.max_new_tokens
    cache_size = settings.cache_size
    if cache_size is None:
        cache_size = min(-(-needed // CACHE_ROUNDING) * CACHE_ROUNDING, max(max_seq_len, needed))
    if cache_size > max_seq_len:
        raise ContextError(f"cache_size {cache_size} exceeds the model's max_seq_len {max_seq_len}; "
                           f"lower --cache_size, --max_new_tokens or the prompt length")
    if needed > cache_size:
        raise ContextError(f"prompt ({prompt_len} tokens) + max_new_tokens ({settings.max_new_tokens}) = {needed} "
                           f"does not fit cache_size {cache_size}; raise --cache_size or shorten them")
    return cache_size


def benchmark(model: Transformer, prompt: Tensor, settings: Settings,
              options: techniques.RunOptions = techniques.RunOptions()) -> dict:
    """Time generation from `prompt` (B, T) on an already quantized model; returns GENERATE_FIELDS
    measurements (everything but the copy bandwidth, which main measures before loading)."""
    device = prompt.device
    batch_size, prompt_len = prompt.shape
    cache_size = resolve_cache_size(prompt_len, settings, model.config.max_seq_len)
    weights_read = weight_bytes_per_step(model, batch_size)
    model_size = techniques.model_size_bytes(model)
    if device.type == "cpu":
        check_host_memory(model, batch_size, cache_size, options)
    with torch.device(device):  # allocate the caches on the device, not on the host first
        model.setup_caches(batch_size, cache_size, kv_cache=options.kv_cache, mask=options.mask)
    kv_stored, kv_read = kv_bytes(model)
    decode_steps = settings.max_new_tokens - 1
    contexts = range(prompt_len + 1, prompt_len + 1 + decode_steps)  # context the i-th decode step attends
    kv_read_per_step = sum(map(kv_read, contexts)) / decode_steps if decode_steps else 0

    prefill_fn = torch.compile(prefill, fullgraph=True, dynamic=True) if settings.compile_prefill else eager_prefill
    if settings.compile in ("block", "graph"):
        decode = GraphedDecode(model, settings.temperature, settings.top_k, compiled=settings.compile == "block").decode
    else:
        decode_fn = (torch.compile(decode_one_token, mode="reduce-overhead", fullgraph=True)
                     if settings.compile == "full" else decode_one_token)
        decode = partial(decode_loop, model, decode_fn, settings.temperature, settings.top_k)
    sync = lambda: _sync(device)  # noqa: E731

    # recompile_limit: --compile block's one compiled block serves every layer; should guards ever
    # tell layers apart, it recompiles per layer instead of falling back to eager after the default 8.
    with (torch.no_grad(), torch._inductor.config.patch(inductor_config(model)),
          torch._dynamo.config.patch(recompile_limit=max(64, len(model.layers)))):
        start = time.perf_counter()
        for _ in range(settings.warmup):
            generate_once(model, prompt, settings, prefill_fn, decode, sync)
        warmup_s = time.perf_counter() - start
        ttft, decode_s = [], []
        with PeakMemory(device) as memory:
            for _ in range(settings.num_samples):
                _, first, rest = generate_once(model, prompt, settings, prefill_fn, decode, sync)
                ttft.append(first)
                decode_s.append(rest)

    tok_s = _summary([batch_size * settings.max_new_tokens / (f + d) for f, d in zip(ttft, decode_s)])
    decode_tok_s = _summary([batch_size * decode_steps / d for d in decode_s]) if decode_steps else None
    bytes_per_token = weights_read + kv_read_per_step
    fields = dict(
        prompt_tokens=prompt_len, cache_size=cache_size,
        ttft_s_median=statistics.median(ttft), warmup_s=warmup_s,
        peak_alloc_bytes=memory.alloc, peak_reserved_bytes=memory.reserved, peak_memory_source=memory.source,
        model_size_bytes=model_size, kv_cache_bytes=kv_stored, bytes_per_token=int(bytes_per_token),
        samples=[{"ttft_s": f, "decode_s": d} for f, d in zip(ttft, decode_s)],
    )
    fields.update({f"tok_s_{k}": v for k, v in tok_s.items()})
    if decode_tok_s is not None:
        fields.update({f"decode_tok_s_{k}": v for k, v in decode_tok_s.items()})
        fields["bandwidth_gb_s"] = int(bytes_per_token) * decode_tok_s["median"] / batch_size / 1e9
    return fields


# ----------------------------------------------------------------------------- the CLI

def make_prompt(args, tokenizer, vocab_size: int, device: torch.device) -> Tensor:
    if args.prefill_size is not None:
        generator = torch.Generator().manual_seed(args.seed)
        tokens = torch.randint(0, vocab_size, (args.batch_size, args.prefill_size), generator=generator)
    else:
        ids = tokenizer.encode(args.prompt, bos=True)
        tokens = torch.tensor(ids, dtype=torch.long).expand(args.batch_size, -1).contiguous()
    return tokens.to(device)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m llama.generate", description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", required=True, help="checkpoint directory (model.pth, tokenizer.model, meta.json)")
    p.add_argument("--technique", default="none", help="spec such as int4wo-64+kv-int8+linear-mask (python -m llama.techniques)")
    p.add_argument("--out", required=True, help="result JSON path")
    p.add_argument("--compile", nargs="?", const="full", default="none", choices=COMPILE_MODES,
                   help='decode: none = eager; full (the bare flag) = the whole decode step compiled with '
                        'mode="reduce-overhead", fullgraph (minutes of warm-up); block = each TransformerBlock '
                        'compiled, the whole step captured in one CUDA graph (seconds of warm-up); graph = the same '
                        'one CUDA graph per step around eager blocks (nothing compiled)')
    p.add_argument("--compile_prefill", action="store_true", help="torch.compile prefill (dynamic shapes)")
    p.add_argument("--batch_size", type=int, default=1)
    p.add_argument("--max_new_tokens", type=int, default=200)
    p.add_argument("--num_samples", type=int, default=5, help="timed samples after warm-up")
    prompt = p.add_mutually_exclusive_group()
    prompt.add_argument("--prompt", default="Hello, my name is")
    prompt.add_argument("--prefill_size", type=int, help="use this many random prompt tokens instead of --prompt")
    p.add_argument("--cache_size", type=int, help=f"KV cache slots (default: prompt + new tokens rounded up to {CACHE_ROUNDING})")
    p.add_argument("--temperature", type=float, default=0.8, help="0 means greedy")
    p.add_argument("--top_k", type=int, default=200)
    p.add_argument("--device", default="auto", help="auto (cuda if available, else cpu), cpu, cuda or cuda:N")
    p.add_argument("--precision", choices=list(DTYPES), default="bfloat16")
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--warmup", type=int, default=1, help="untimed samples first (they include compilation)")
    args = p.parse_args(argv)
    for name in ("batch_size", "num_samples", "prefill_size", "cache_size", "top_k"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            p.error(f"--{name} must be >= 1")
    if args.max_new_tokens < 2:
        p.error("--max_new_tokens must be >= 2 (decode speed needs at least one decode step)")
    if args.warmup < 0:
        p.error("--warmup must be >= 0")
    return args


def _error(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def main(argv=None) -> int:
    args = parse_args(argv)
    from llama import checkpoint  # here, so that tests of benchmark() don't need it

    dtype = DTYPES[args.precision]
    settings = Settings(batch_size=args.batch_size, max_new_tokens=args.max_new_tokens, num_samples=args.num_samples,
                        warmup=args.warmup, cache_size=args.cache_size, temperature=args.temperature,
                        top_k=args.top_k, compile=args.compile, compile_prefill=args.compile_prefill)
    try:  # bad input: one line, exit 2, before anything heavy
        techniques.parse(args.technique)
        device = resolve_device(args.device)
        meta = checkpoint.read_meta(Path(args.checkpoint))
        prompt_len = args.prefill_size
        if prompt_len is None:  # the tokenizer alone: cheap, and every result then records the real sizes
            tokenizer = load_tokenizer(Path(args.checkpoint) / "tokenizer.model", meta.get("tokenizer"))
            prompt_len = len(tokenizer.encode(args.prompt, bos=True))
        cache_size = resolve_cache_size(prompt_len, settings, meta["args"]["max_seq_len"])
    except (ValueError, checkpoint.CheckpointError) as e:
        return _error(str(e))
    if device.type == "cuda":
        torch.cuda.set_device(device)
    torch.manual_seed(args.seed)
    command = results.reproduce_command() if argv is None else shlex.join(["python", "-m", "llama.generate", *argv])
    fields = dict(model=meta["model"], synthetic=meta.get("synthetic"), checkpoint=str(args.checkpoint),
                  technique=args.technique, device=str(device), precision=args.precision, command=command,
                  env=results.environment(str(device)), compile=args.compile, compile_prefill=args.compile_prefill,
                  batch_size=args.batch_size, max_new_tokens=args.max_new_tokens, num_samples=args.num_samples,
                  cache_size=cache_size, temperature=args.temperature, top_k=args.top_k,
                  prompt_tokens=prompt_len)
    try:
        techniques.check(args.technique, device, dtype)
        # Measured first, while the device holds nothing else.
        copy_gb_s = (copy_bandwidth_gb_s(device, 1 << 30, 20) if device.type == "cuda"
                     else copy_bandwidth_gb_s(device, 1 << 27, 4))
        fields["copy_bandwidth_gb_s"] = copy_gb_s
        model, tokenizer, meta = checkpoint.load(args.checkpoint, device=device, dtype=dtype)
        prompt = make_prompt(args, tokenizer, model.config.vocab_size, device)
        options = techniques.apply(model, args.technique, device, dtype)
        fields["kernel_settings"] = kernel_settings(model)
        fields.update(benchmark(model, prompt, settings, options))
        fields["bandwidth_fraction"] = fields["bandwidth_gb_s"] / copy_gb_s
        result = results.make_result("generate", status="ok", **fields)
    except (ContextError, checkpoint.CheckpointError) as e:
        return _error(str(e))
    except techniques.Unsupported as e:
        result = results.make_result("generate", status="unsupported", reason=str(e), **fields)
    except Exception as e:
        if not results.is_oom(e):
            raise
        result = results.make_result("generate", status="oom", reason=results.oom_reason(e), **fields)
    results.write_result(args.out, result)
    print(summary(result))
    return 0


def summary(r: dict) -> str:
    head = f"{r['model']} {r['technique']} on {r['device']} ({r['precision']}, batch {r['batch_size']})"
    if r["status"] != "ok":
        return f"{head}: {r['status']}: {r['reason']}"
    return "\n".join([
        head + f", decode compile {r['compile']}" + (", prefill compiled" if r["compile_prefill"] else ""),
        f"  decode   {r['decode_tok_s_median']:.2f} tok/s (min {r['decode_tok_s_min']:.2f}, max {r['decode_tok_s_max']:.2f}, "
        f"cv {r['decode_tok_s_cv']:.1%}); end-to-end {r['tok_s_median']:.2f} tok/s; TTFT {r['ttft_s_median'] * 1e3:.1f} ms",
        f"  warm-up  {r['warmup_s']:.1f} s",
        f"  model    {_mib(r['model_size_bytes'])}; KV cache {_mib(r['kv_cache_bytes'])} ({r['cache_size']} slots); "
        f"peak {_mib(r['peak_alloc_bytes'])} ({r['peak_memory_source']})",
        f"  traffic  {r['bytes_per_token'] / 1e6:.1f} MB/step x {r['decode_tok_s_median'] / r['batch_size']:.1f} steps/s = "
        f"{r['bandwidth_gb_s']:.3g} GB/s = {r['bandwidth_fraction']:.2%} of copy {r['copy_bandwidth_gb_s']:.3g} GB/s",
        f"  result   {r['command']}",
    ])


def _mib(n: int) -> str:
    return f"{n / 2**20:,.1f} MiB"


if __name__ == "__main__":
    sys.exit(main())
