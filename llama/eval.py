"""Accuracy through lm-eval: our Transformer as an lm-eval model, one JSON per (model, technique, task).

    python -m llama.eval --checkpoint DIR --technique int4wo-64 --task llama_local_ppl --out r.json

`LlamaLM` subclasses lm-eval's TemplateLM (not HFLM, which needs an HF model and accelerate):
  loglikelihood          TemplateLM tokenizes (context with BOS, as HF Llama tokenizers do);
                         `_loglikelihood_tokens` scores batches sorted by length, right-padded.
  loglikelihood_rolling  each document (no BOS) cut into disjoint windows of `max_length` tokens,
                         the first conditioned on BOS, all windows of all documents batched together.
  generate_until         greedy decoding through the KV cache, one request at a time (the static
                         cache has one position counter, so prompts of different lengths can't share it).
Scoring uses the model's no-cache forward (input_pos=None), so the KV technique plays no part in it;
weight quantization does.

`llama_local_ppl` (llama/data/) is a perplexity task over a corpus shipped with the project; it
needs no network. Any other task name goes to lm-eval's registry and needs the Hugging Face hub
(or its local cache): when the hub is unreachable we say so at once instead of letting the
dataset download retry for half a minute.
"""
from __future__ import annotations

import argparse
import math
import os
import shlex
import socket
import sys
from pathlib import Path
from urllib.parse import urlparse

import torch
import torch.nn.functional as F
import yaml
from lm_eval.api.model import TemplateLM
from lm_eval.models.utils import Collator, handle_stop_sequences, normalize_gen_kwargs
from lm_eval.utils import get_rolling_token_windows, make_disjoint_window
from tqdm import tqdm

from llama.results import LOCAL_TASK, environment, is_oom, make_result, oom_reason, write_result
from llama.results import DEFAULT_EVAL_WINDOW as DEFAULT_MAX_SEQ_LEN
from llama.gpus import resolve_device
from llama.model import KVCache

DATA_DIR = Path(__file__).resolve().parent / "data"


class EvalError(Exception):
    """Bad input or an unreachable dataset: one actionable line, exit status 2."""


class LlamaLM(TemplateLM):
    def __init__(self, model, tokenizer, batch_size: int = 1, max_length: int | None = None,
                 kv_cache="model", mask: str = "quadratic", max_gen_toks: int = 256):
        super().__init__()
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.max_length = min(max_length or DEFAULT_MAX_SEQ_LEN, model.config.max_seq_len)
        self.kv_cache, self.mask, self.max_gen_toks = kv_cache, mask, max_gen_toks
        self._device = model.tok_embeddings.weight.device  # LM.device reads it
        self._caches_ready = False

    # ------------------------------------------------------------------ tokenization

    @property
    def eot_token_id(self) -> int:
        return self.tokenizer.eos_id

    @property
    def prefix_token_id(self) -> int:
        # What an empty context (and each document's first rolling window) is conditioned on.
        return self.tokenizer.bos_id

    def tok_encode(self, string: str, add_special_tokens: bool | None = None, **kwargs) -> list[int]:
        # None (TemplateLM's contexts) adds BOS, like HF Llama tokenizers; False is for continuations.
        return self.tokenizer.encode(string, bos=add_special_tokens is not False)

    def tok_decode(self, tokens: list[int]) -> str:
        return self.tokenizer.decode(tokens)

    # ------------------------------------------------------------------ scoring

    @torch.inference_mode()
    def _loglikelihood_tokens(self, requests, disable_tqdm: bool = False, **kwargs) -> list[tuple[float, bool]]:
        """requests: (key, context_tokens, continuation_tokens) -> (sum log p(continuation), greedy?)."""
        # Longest first: a batch is padded to its first row, and an OOM shows up at once.
        order = Collator(requests, sort_fn=lambda r: (-len(r[1] + r[2]), tuple(r[1] + r[2])))
        results = []
        for chunk in tqdm(order.get_batched(n=self.batch_size), disable=disable_tqdm,
                          total=math.ceil(len(requests) / self.batch_size), desc="scoring"):
            # The model sees context + continuation minus the last token, truncated on the left.
            inputs = [(ctx + cont)[-(self.max_length + 1):][:-1] for _, ctx, cont in chunk]
            width = max(len(i) for i in inputs)
            # Right padding: causal attention keeps the pad tokens from touching real positions.
            batch = torch.tensor([i + [0] * (width - len(i)) for i in inputs], device=self.device)
            logits = self._forward(batch)
            for row, inp, (_, _, cont) in zip(logits, inputs, chunk):
                logprobs = F.log_softmax(row[len(inp) - len(cont): len(inp)].float(), dim=-1)
                target = torch.tensor(cont, device=self.device)
                score = logprobs.gather(-1, target[:, None]).double().sum().item()  # fp64: long documents
                results.append((score, bool((logprobs.argmax(-1) == target).all())))
        return order.get_original(results)

    def _forward(self, batch: torch.Tensor) -> torch.Tensor:
        """Logits of a right-padded batch. With a KV-cache technique the batch is prefilled through
        that cache, so every token attends to K/V as the cache stores them (quantized) and the
        format's accuracy cost shows; otherwise the cache-free forward, which is the same function."""
        if self.kv_cache in ("model", KVCache):
            return self.model(batch)
        rows, width = batch.shape
        self.model.setup_caches(rows, width, kv_cache=self.kv_cache, mask=self.mask)
        self._caches_ready = False  # generate_until sets up its own
        return self.model(batch, torch.arange(width, device=batch.device))

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        windows, owners = [], []
        for i, (text,) in enumerate(req.args for req in requests):
            for context, target in map(make_disjoint_window, get_rolling_token_windows(
                    token_list=self.tok_encode(text, add_special_tokens=False), prefix_token=self.prefix_token_id,
                    max_seq_len=self.max_length, context_len=1)):
                windows.append((None, context, target))
                owners.append(i)
        totals = [0.0] * len(requests)
        for owner, (score, _) in zip(owners, self._loglikelihood_tokens(windows, disable_tqdm=disable_tqdm)):
            totals[owner] += score
        for req, total in zip(requests, totals):
            self.cache_hook.add_partial("loglikelihood_rolling", req.args, total)
        return totals

    # ------------------------------------------------------------------ generation

    @torch.inference_mode()
    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        if not self._caches_ready:
            self.model.setup_caches(1, self.max_length, kv_cache=self.kv_cache, mask=self.mask)
            self._caches_ready = True
        outputs = []
        for req in tqdm(requests, disable=disable_tqdm, desc="generating"):
            context, gen_kwargs = req.args
            kwargs = normalize_gen_kwargs(gen_kwargs, self.max_gen_toks)
            # Greedy always: lm-eval's generative tasks ask for do_sample=False; sampling would make
            # accuracy differences between techniques noise.
            until = handle_stop_sequences(kwargs["until"], self.tok_decode([self.eot_token_id]))
            max_new = min(kwargs["max_gen_toks"], self.max_length - 1)
            prompt = self.tok_encode(context)[-(self.max_length - max_new):]
            outputs.append(self._greedy(prompt, max_new, until))
            self.cache_hook.add_partial("generate_until", req.args, outputs[-1])
        return outputs

    def _greedy(self, prompt: list[int], max_new: int, until: list[str]) -> str:
        positions = torch.arange(len(prompt), device=self.device)
        logits = self.model(torch.tensor([prompt], device=self.device), positions)
        generated, text = [], ""
        for step in range(max_new):
            token = int(logits[0, -1].argmax())
            if token == self.eot_token_id:
                break
            generated.append(token)
            text = self.tok_decode(generated)
            if any(stop in text for stop in until):
                break
            position = torch.tensor([len(prompt) + step], device=self.device)
            logits = self.model(torch.tensor([[token]], device=self.device), position)
        for stop in until:  # cut at the first stop string, as HFLM does
            text = text.split(stop)[0]
        return text


# ----------------------------------------------------------------------------- tasks

def local_task_config() -> dict:
    """The shipped YAML with its corpus paths made absolute (lm-eval resolves them against the cwd)."""
    config = yaml.safe_load((DATA_DIR / f"{LOCAL_TASK}.yaml").read_text())
    files = config["dataset_kwargs"]["data_files"]
    config["dataset_kwargs"]["data_files"] = {split: sorted(str(p) for p in DATA_DIR.glob(pattern))
                                              for split, pattern in files.items()}
    return config


def hub_unreachable() -> str | None:
    """Why the Hugging Face hub can't be reached, or None. A quick TCP connect, not a download."""
    for flag in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        if os.environ.get(flag, "").upper() in ("1", "ON", "YES", "TRUE"):
            return f"{flag}={os.environ[flag]}"
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return None  # through a proxy we can't tell cheaply; let the download decide
    url = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    try:
        socket.create_connection((url.hostname, url.port or 443), timeout=3).close()
        return None
    except OSError as e:
        return f"no network to {url.hostname} ({e.strerror or e})"


def offline_message(task: str, reason: str) -> str:
    return (f"task {task!r} needs its dataset from the Hugging Face hub, which is unreachable ({reason}) and"
            f" not in the local cache; run it where the hub is reachable (or pre-fill HF_HOME there),"
            f" or use --task {LOCAL_TASK}, which runs offline")


def prepare_hub_task(task: str) -> None:
    """Before lm-eval (and `datasets`) are imported: if the hub is unreachable, switch to offline mode
    so a cached dataset still loads, and fail at once when there is no cache at all."""
    reason = hub_unreachable()
    if reason is None:
        return
    os.environ["HF_HUB_OFFLINE"] = os.environ["HF_DATASETS_OFFLINE"] = "1"
    import datasets.config
    from huggingface_hub import constants

    hub_cache, datasets_cache = Path(constants.HF_HUB_CACHE), Path(datasets.config.HF_DATASETS_CACHE)
    cached = (any(hub_cache.glob("datasets--*")) if hub_cache.is_dir() else False) or \
             (any("___" in p.name for p in datasets_cache.iterdir()) if datasets_cache.is_dir() else False)
    if not cached:
        raise EvalError(offline_message(task, reason))


def evaluate(lm: LlamaLM, task: str, limit: int | None, num_fewshot: int | None) -> tuple[dict, dict, dict]:
    """Run one lm-eval task (or group); return (metrics, stderr, lm-eval's full results)."""
    from datasets.exceptions import DatasetNotFoundError
    from huggingface_hub.errors import LocalEntryNotFoundError, OfflineModeIsEnabled
    from lm_eval import evaluator
    from lm_eval.tasks import TaskManager

    if task == LOCAL_TASK:  # skipping lm-eval's built-in index saves ~10 s
        manager, spec = TaskManager(include_defaults=False), local_task_config()
    else:
        manager, spec = TaskManager(), task
        if task not in manager.all_tasks:
            raise EvalError(f"unknown lm-eval task {task!r}; try {LOCAL_TASK}, wikitext, hellaswag, arc_easy,"
                            f" arc_challenge or mmlu (`lm_eval ls tasks` lists all)")
    try:
        out = evaluator.simple_evaluate(model=lm, tasks=[spec], num_fewshot=num_fewshot, limit=limit,
                                        task_manager=manager, log_samples=False)
    except (ConnectionError, OfflineModeIsEnabled, LocalEntryNotFoundError, DatasetNotFoundError) as e:
        raise EvalError(offline_message(task, f"{type(e).__name__}")) from e
    metrics, stderr = {}, {}
    for name, row in out["results"].items():
        prefix = "" if name == task else f"{name}/"
        for key, value in row.items():
            if "," not in key:
                continue  # "alias", "samples"
            metric, filt = key.split(",", 1)
            is_stderr = metric.endswith("_stderr")
            metric = metric.removesuffix("_stderr")
            label = prefix + (metric if filt == "none" else f"{metric},{filt}")
            if is_stderr:  # lm-eval writes "N/A" where it has none (perplexities)
                stderr[label] = value if isinstance(value, (int, float)) else None
            else:
                metrics[label] = value
    return metrics, stderr, out


# ----------------------------------------------------------------------------- CLI

def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m llama.eval", description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", required=True, type=Path, help="checkpoint directory (llama.checkpoint layout)")
    p.add_argument("--technique", default="none", help="technique spec, e.g. int4wo-64 (see python -m llama.techniques)")
    p.add_argument("--task", default=None,
                   help=f"lm-eval task or group (default: {LOCAL_TASK} for synthetic checkpoints, wikitext for real ones)")
    p.add_argument("--out", required=True, type=Path, help="result JSON, written atomically")
    p.add_argument("--limit", type=int, default=None, help="documents per task (default: all)")
    p.add_argument("--num_fewshot", type=int, default=None, help="few-shot examples (default: the task's)")
    p.add_argument("--batch_size", type=int, default=1, help="sequences scored per forward pass")
    p.add_argument("--device", default="auto", help="auto (cuda if present), cpu or cuda:N")
    p.add_argument("--precision", default="bfloat16", choices=["bfloat16", "float32"])
    p.add_argument("--max_seq_len", type=int, default=None,
                   help=f"eval window in tokens (default: min(model max_seq_len, {DEFAULT_MAX_SEQ_LEN}))")
    args = p.parse_args(argv)
    for name in ("limit", "batch_size", "max_seq_len"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            p.error(f"--{name} must be >= 1")
    if args.num_fewshot is not None and args.num_fewshot < 0:
        p.error("--num_fewshot must be >= 0")
    return args


def default_task(meta: dict) -> str:
    # Random weights score the same on any text, so they get the task that needs no download.
    return LOCAL_TASK if meta.get("synthetic") else "wikitext"


def run(args: argparse.Namespace, command: str) -> dict:
    """Load, apply the technique, evaluate; return the result dict (ok, oom or unsupported)."""
    # Neither module imports huggingface_hub, so the offline flags prepare_hub_task sets still apply.
    from llama import checkpoint, techniques

    try:
        device = resolve_device(args.device)
    except ValueError as e:
        raise EvalError(str(e)) from None
    dtype = getattr(torch, args.precision)
    try:
        task = args.task or default_task(checkpoint.read_meta(args.checkpoint))
    except checkpoint.CheckpointError as e:
        raise EvalError(str(e)) from None
    if task != LOCAL_TASK:
        prepare_hub_task(task)  # before anything imports datasets or huggingface_hub
    try:
        techniques.check(args.technique, device, dtype)  # before loading weights: a bad spec fails fast
        unsupported = None
    except techniques.UnknownTechnique as e:
        raise EvalError(str(e)) from None
    except techniques.Unsupported as e:
        unsupported = str(e)
    try:
        meta = checkpoint.read_meta(Path(args.checkpoint))
    except checkpoint.CheckpointError as e:
        raise EvalError(str(e)) from None
    max_len = min(args.max_seq_len or DEFAULT_MAX_SEQ_LEN, meta["args"]["max_seq_len"])
    common = dict(model=meta.get("model"), synthetic=meta.get("synthetic"), checkpoint=str(args.checkpoint),
                  technique=args.technique, device=str(device), precision=args.precision, task=task,
                  limit=args.limit, num_fewshot=args.num_fewshot, max_seq_len=max_len,
                  env=environment(str(device)), command=command)
    if unsupported:  # decided before loading the weights
        return make_result("eval", status="unsupported", reason=unsupported, **common)
    try:
        model, tokenizer, meta = checkpoint.load(args.checkpoint, device, dtype)
        options = techniques.apply(model, args.technique, device, dtype)
        lm = LlamaLM(model, tokenizer, batch_size=args.batch_size, max_length=max_len,
                     kv_cache=options.kv_cache, mask=options.mask)
        metrics, stderr, _ = evaluate(lm, task, args.limit, args.num_fewshot)
    except techniques.Unsupported as e:
        return make_result("eval", status="unsupported", reason=str(e), **common)
    except checkpoint.CheckpointError as e:
        raise EvalError(str(e)) from None
    except Exception as e:
        if not is_oom(e):
            raise
        return make_result("eval", status="oom", reason=oom_reason(e), **common)
    return make_result("eval", status="ok", metrics=metrics, stderr=stderr, **common)


def summary(result: dict) -> str:
    from tabulate import tabulate

    head = f"{result['model']} [{result['technique']}] {result['task']} on {result['device']}: {result['status']}"
    if result["status"] != "ok":
        return f"{head} ({result['reason']})"
    rows = [(k, v, (result["stderr"] or {}).get(k)) for k, v in result["metrics"].items()]
    note = "\n(synthetic weights: accuracy is meaningless)" if result["synthetic"] else ""
    return f"{head}\n{tabulate(rows, headers=['metric', 'value', 'stderr'], floatfmt='.4f', missingval='-')}{note}"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    try:
        result = run(args, command=shlex.join(["python", "-m", "llama.eval", *argv]))
    except EvalError as e:
        print(f"llama.eval: error: {e}", file=sys.stderr)
        return 2
    write_result(args.out, result)
    print(summary(result))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
