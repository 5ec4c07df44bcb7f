"""Checkpoints: one directory layout (model.pth, tokenizer.model, meta.json; see docs/design.md)
for every source: synthesized from a registered shape, or downloaded and converted from HF.

    python -m llama.checkpoint prepare --model meta-llama/Llama-3.1-8B --out ckpt/      # HF, gated
    python -m llama.checkpoint prepare --model meta-llama/Llama-3.1-8B --out ckpt/ --synthetic
    python -m llama.checkpoint synthesize --model tiny --out ckpt/ [--seed 0]

meta.json is written last, atomically, so a directory left by an interrupted run is refused by
load() instead of being half-read.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import shutil
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Optional

import torch

from llama.model import ARCHITECTURES, ModelArgs, Transformer, find_architecture
from llama.tokenizer import TokenizerError, load_tokenizer, synthesize_tokenizer

WEIGHTS, TOKENIZER, META = "model.pth", "tokenizer.model", "meta.json"
INIT_STD = 0.02  # Llama's initializer_range: keeps random-weight activations in a sane range
DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


class CheckpointError(RuntimeError):
    """One-line, actionable; never contains a token."""


def dtype_of(name: str) -> torch.dtype:
    if name not in DTYPES:
        raise CheckpointError(f"unknown dtype {name!r}; use one of {', '.join(DTYPES)}")
    return DTYPES[name]


# ----------------------------------------------------------------------------- layout

def state_dict_shapes(args: ModelArgs) -> dict[str, tuple[int, ...]]:
    """Every key of our layout and its shape, in a stable order."""
    hd, ffn = args.head_dim, args.intermediate_size
    shapes = {"tok_embeddings.weight": (args.vocab_size, args.dim)}
    for i in range(args.n_layers):
        p = f"layers.{i}."
        shapes[p + "attention.wqkv.weight"] = ((args.n_heads + 2 * args.n_kv_heads) * hd, args.dim)
        shapes[p + "attention.wo.weight"] = (args.dim, args.n_heads * hd)
        shapes[p + "feed_forward.w13.weight"] = (2 * ffn, args.dim)
        shapes[p + "feed_forward.w2.weight"] = (args.dim, ffn)
        shapes[p + "attention_norm.weight"] = (args.dim,)
        shapes[p + "ffn_norm.weight"] = (args.dim,)
    shapes["norm.weight"] = (args.dim,)
    if not args.tie_embeddings:
        shapes["output.weight"] = (args.vocab_size, args.dim)
    return shapes


def write_checkpoint(out_dir: Path, state_dict: dict[str, torch.Tensor], tokenizer: Path | bytes,
                     meta: dict[str, Any]) -> Path:
    """model.pth and tokenizer.model via temp+rename, then meta.json last. An existing meta.json
    is removed first, so an interrupted overwrite never leaves a directory load() accepts."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / META).unlink(missing_ok=True)
    _atomic(out_dir / WEIGHTS, lambda tmp: torch.save(state_dict, tmp))
    if isinstance(tokenizer, bytes):
        _atomic(out_dir / TOKENIZER, lambda tmp: tmp.write_bytes(tokenizer))
    else:
        _atomic(out_dir / TOKENIZER, lambda tmp: shutil.copyfile(tokenizer, tmp))
    _atomic(out_dir / META, lambda tmp: tmp.write_text(json.dumps(meta, indent=2) + "\n"))
    return out_dir


def _atomic(path: Path, write) -> None:
    # A pid-named temp (not mkstemp) so the final file gets the umask's permissions, not 0600.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _meta(model: str, args: ModelArgs, dtype: str, source: str, seed=None, repo=None, revision=None) -> dict:
    return {"model": model, "synthetic": source == "synthetic", "source": source, "seed": seed, "repo": repo,
            "revision": revision, "dtype": dtype, "args": args.to_dict(), "tokenizer": args.tokenizer}


# ----------------------------------------------------------------------------- synthesize

def _tensor_seed(seed: int, name: str) -> int:
    # One generator per (seed, tensor, chunk): deterministic, independent of order and threads.
    return int.from_bytes(hashlib.sha256(f"{seed}/{name}".encode()).digest()[:8], "little") & (2**63 - 1)


def _random_normal(shape: tuple[int, ...], dtype: torch.dtype, seed: int, name: str,
                   pool: ThreadPoolExecutor, chunk: int = 1 << 22) -> torch.Tensor:
    """N(0, INIT_STD) drawn straight into `dtype`, in 4M-element chunks on a thread pool (torch
    releases the GIL), so an 8B model needs no fp32 copy and uses every core."""
    out = torch.empty(shape, dtype=dtype)
    flat = out.view(-1)

    def fill(start: int) -> None:
        g = torch.Generator().manual_seed(_tensor_seed(seed, f"{name}/{start}"))
        flat[start:start + chunk].normal_(0.0, INIT_STD, generator=g)

    list(pool.map(fill, range(0, flat.numel(), chunk)))
    return out


def synthesize(model_name: str, out_dir: str | os.PathLike, seed: int = 0, dtype: str = "bfloat16") -> Path:
    """A checkpoint of a registered shape with seeded random weights and a generated tokenizer
    of exactly its vocabulary. Same seed -> identical files."""
    try:
        _, args = find_architecture(model_name)
    except KeyError as e:
        raise CheckpointError(e.args[0]) from None
    torch_dtype, out_dir = dtype_of(dtype), Path(out_dir)
    state_dict = {}
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        for name, shape in state_dict_shapes(args).items():
            if name.endswith("norm.weight"):
                state_dict[name] = torch.ones(shape, dtype=torch_dtype)
            else:
                state_dict[name] = _random_normal(shape, torch_dtype, seed, name, pool)
    # Exactly vocab_size ids: Llama 2's 32000 pieces, Llama 3's 128000 ranks + 256 specials.
    tokenizer = synthesize_tokenizer(args.tokenizer, args.vocab_size, seed=seed)
    return write_checkpoint(out_dir, state_dict, tokenizer, _meta(model_name, args, dtype, "synthetic", seed=seed))


# ----------------------------------------------------------------------------- load

def read_meta(ckpt_dir: Path) -> dict:
    path = ckpt_dir / META
    if not path.exists():
        hint = "an interrupted write" if (ckpt_dir / WEIGHTS).exists() else "not a checkpoint directory"
        raise CheckpointError(f"{path} is missing ({hint}); re-run `python -m llama.checkpoint prepare`")
    try:
        meta = json.loads(path.read_text())
        ModelArgs.from_dict(meta["args"])
        meta["dtype"], meta["tokenizer"]
    except (ValueError, KeyError, TypeError) as e:
        raise CheckpointError(f"{path}: corrupt or not our meta.json ({e.__class__.__name__}: {e}); "
                              f"re-run `python -m llama.checkpoint prepare`") from None
    return meta


def load(ckpt_dir: str | os.PathLike, device: str | torch.device = "cpu", dtype: str | torch.dtype | None = None):
    """-> (Transformer, Tokenizer, meta). Weights are memory-mapped and assigned, never copied
    on the host; `dtype` None keeps the checkpoint's."""
    ckpt_dir = Path(ckpt_dir)
    meta = read_meta(ckpt_dir)
    args = ModelArgs.from_dict(meta["args"])
    if meta.get("synthetic") and meta["model"] in ARCHITECTURES and ARCHITECTURES[meta["model"]] != args:
        raise CheckpointError(f"{ckpt_dir / META}: args differ from the registry's {meta['model']!r}; "
                              f"re-run `python -m llama.checkpoint synthesize`")
    try:
        tokenizer = load_tokenizer(ckpt_dir / TOKENIZER, kind=meta["tokenizer"])
    except TokenizerError as e:
        raise CheckpointError(f"{e}; re-run `python -m llama.checkpoint prepare`") from None
    if tokenizer.vocab_size != args.vocab_size:  # also catches a ranks file cut at a line boundary
        raise CheckpointError(f"{ckpt_dir / TOKENIZER}: {tokenizer.vocab_size} tokens but the model has "
                              f"{args.vocab_size} embeddings; truncated or wrong tokenizer, re-run prepare")

    path = ckpt_dir / WEIGHTS
    try:
        state_dict = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path} is missing; re-run `python -m llama.checkpoint prepare`") from None
    except Exception as e:  # torch raises RuntimeError, pickle or zip errors for damaged files
        raise CheckpointError(f"{path}: corrupt or truncated ({e.__class__.__name__}); "
                              f"re-run `python -m llama.checkpoint prepare`") from None
    expected = state_dict_shapes(args)
    missing, unexpected = sorted(set(expected) - set(state_dict)), sorted(set(state_dict) - set(expected))
    if missing or unexpected:
        raise CheckpointError(f"{path}: keys do not match meta.json's args (missing {missing[:3]}, "
                              f"unexpected {unexpected[:3]}); re-run `python -m llama.checkpoint prepare`")
    for name, shape in expected.items():
        if tuple(state_dict[name].shape) != shape:
            raise CheckpointError(f"{path}: {name} has shape {tuple(state_dict[name].shape)}, meta.json's args "
                                  f"need {shape}; re-run `python -m llama.checkpoint prepare`")

    with torch.device("meta"):
        model = Transformer(args)
    model.load_state_dict(state_dict, strict=False, assign=True)
    if args.tie_embeddings:
        model.output.weight = model.tok_embeddings.weight  # assign=True replaced the shared Parameter
    if isinstance(dtype, str):
        dtype = dtype_of(dtype)
    model = model.to(device=device, dtype=dtype)
    return model.eval(), tokenizer, meta


# ----------------------------------------------------------------------------- convert (HF -> ours)

def args_from_hf_config(config: dict, tokenizer_kind: str, where: str) -> ModelArgs:
    """ModelArgs from a HF LlamaConfig dict: old (rope_theta + rope_scaling) and transformers 5
    (rope_parameters) layouts."""
    try:
        dim, n_heads = config["hidden_size"], config["num_attention_heads"]
        rope = config.get("rope_parameters") or config.get("rope_scaling") or {}
        rope_type = rope.get("rope_type", rope.get("type", "default"))
        rope_base = rope.get("rope_theta", config.get("rope_theta", 10000.0))
        if rope_type not in ("default", "llama3"):
            raise CheckpointError(f"{where}: rope type {rope_type!r} is not supported (only default and llama3)")
        scaling = None
        if rope_type == "llama3":
            scaling = {k: rope[k] for k in ("factor", "low_freq_factor", "high_freq_factor",
                                             "original_max_position_embeddings")}
        head_dim = config.get("head_dim") or dim // n_heads
        if head_dim * n_heads != dim:
            raise CheckpointError(f"{where}: head_dim {head_dim} x {n_heads} heads != hidden_size {dim}; not supported")
        return ModelArgs(dim=dim, n_layers=config["num_hidden_layers"], n_heads=n_heads,
                         n_kv_heads=config.get("num_key_value_heads") or n_heads, vocab_size=config["vocab_size"],
                         intermediate_size=config["intermediate_size"],
                         max_seq_len=config["max_position_embeddings"], norm_eps=config.get("rms_norm_eps", 1e-6),
                         rope_base=float(rope_base), rope_scaling=scaling,
                         tie_embeddings=bool(config.get("tie_word_embeddings", False)), tokenizer=tokenizer_kind)
    except KeyError as e:
        raise CheckpointError(f"{where}: missing {e.args[0]!r}; is this a Llama config.json?") from None


def _same_args(a: ModelArgs, b: ModelArgs) -> bool:
    da, db = a.to_dict(), b.to_dict()
    floats = ("norm_eps", "rope_base")
    return all(math.isclose(da[k], db[k]) for k in floats) and \
        {k: v for k, v in da.items() if k not in floats} == {k: v for k, v in db.items() if k not in floats}


class _HFWeights:
    """Tensors of a HF checkpoint by name, across safetensors / pytorch_model.bin, single or sharded,
    opening each file once and only when one of its tensors is asked for."""

    def __init__(self, hf_dir: Path):
        self.hf_dir, self.open_files = hf_dir, {}
        for index, single in (("model.safetensors.index.json", "model.safetensors"),
                              ("pytorch_model.bin.index.json", "pytorch_model.bin")):
            if (hf_dir / index).exists():
                try:
                    self.files = json.loads((hf_dir / index).read_text())["weight_map"]
                except (ValueError, KeyError):
                    raise CheckpointError(f"{hf_dir / index}: corrupt index (no weight_map); download again") from None
                return
            if (hf_dir / single).exists():
                self.files = None
                self.single = single
                return
        raise CheckpointError(f"{hf_dir}: no model.safetensors, pytorch_model.bin or their index; "
                              f"download the repo again (python -m llama.checkpoint download)")

    def names(self) -> list[str]:
        if self.files is not None:
            return list(self.files)
        return list(self._open(self.single).keys())

    def _open(self, filename: str):
        if filename not in self.open_files:
            path = self.hf_dir / filename
            try:
                if filename.endswith(".safetensors"):
                    from safetensors import safe_open
                    self.open_files[filename] = safe_open(str(path), framework="pt")
                else:
                    self.open_files[filename] = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            except Exception as e:
                raise CheckpointError(f"{path}: missing, corrupt or truncated ({e.__class__.__name__}); "
                                      f"download again") from None
        return self.open_files[filename]

    def get(self, name: str) -> torch.Tensor:
        filename = self.files[name] if self.files is not None else self.single
        f = self._open(filename)
        try:
            return f.get_tensor(name) if hasattr(f, "get_tensor") else f[name]
        except Exception as e:
            raise CheckpointError(f"{self.hf_dir / filename}: cannot read {name} ({e.__class__.__name__}); "
                                  f"download again") from None


def _permute_qk(w: torch.Tensor, n_heads: int, head_dim: int) -> torch.Tensor:
    """HF stores q/k rows for rotate-half RoPE; ours (Meta's) rotates interleaved pairs."""
    return w.view(n_heads, 2, head_dim // 2, w.shape[-1]).transpose(1, 2).reshape(n_heads * head_dim, w.shape[-1])


def find_hf_tokenizer(hf_dir: Path) -> Path:
    # Llama 3 repos keep the tiktoken ranks under original/; Llama 2 the sentencepiece model at the root.
    for candidate in (hf_dir / "original" / TOKENIZER, hf_dir / TOKENIZER):
        if candidate.exists():
            return candidate
    raise CheckpointError(f"{hf_dir}: no tokenizer.model or original/tokenizer.model; download the repo again")


def convert(hf_dir: str | os.PathLike, out_dir: str | os.PathLike, model_name: str | None = None,
            dtype: str = "bfloat16", revision: str | None = None) -> Path:
    """HF Llama checkpoint -> our layout. With `model_name`, the config must match that registry shape."""
    hf_dir, out_dir, torch_dtype = Path(hf_dir), Path(out_dir), dtype_of(dtype)
    config_path = hf_dir / "config.json"
    try:
        config = json.loads(config_path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{config_path} is missing; download the repo again") from None
    except ValueError as e:
        raise CheckpointError(f"{config_path}: not valid JSON ({e}); download the repo again") from None
    tokenizer_path = find_hf_tokenizer(hf_dir)
    try:
        tokenizer = load_tokenizer(tokenizer_path)
    except TokenizerError as e:
        raise CheckpointError(str(e)) from None
    args = args_from_hf_config(config, tokenizer.kind, str(config_path))
    if tokenizer.vocab_size != args.vocab_size:
        raise CheckpointError(f"{tokenizer_path}: {tokenizer.vocab_size} tokens but vocab_size {args.vocab_size} "
                              f"in {config_path}; tokenizer and weights are from different models")
    registry_name = None
    if model_name is not None:
        try:
            registry_name, registered = find_architecture(model_name)
        except KeyError:
            registered = None  # a repo outside the registry is fine; its config.json is the truth
        if registered is not None and not _same_args(args, registered):
            diff = {k: (v, registered.to_dict()[k]) for k, v in args.to_dict().items() if v != registered.to_dict()[k]}
            raise CheckpointError(f"{config_path} does not match registry shape {registry_name!r}: "
                                  f"(config, registry) = {diff}; wrong repo or --model")
        if registered is not None:
            args = registered

    weights = _HFWeights(hf_dir)
    hd = args.head_dim
    get = lambda name: weights.get(name).to(torch_dtype)
    state_dict = {"tok_embeddings.weight": get("model.embed_tokens.weight")}
    for i in range(args.n_layers):
        hf, ours = f"model.layers.{i}.", f"layers.{i}."
        q = _permute_qk(get(hf + "self_attn.q_proj.weight"), args.n_heads, hd)
        k = _permute_qk(get(hf + "self_attn.k_proj.weight"), args.n_kv_heads, hd)
        state_dict[ours + "attention.wqkv.weight"] = torch.cat([q, k, get(hf + "self_attn.v_proj.weight")])
        state_dict[ours + "attention.wo.weight"] = get(hf + "self_attn.o_proj.weight")
        state_dict[ours + "feed_forward.w13.weight"] = torch.cat([get(hf + "mlp.gate_proj.weight"),
                                                                  get(hf + "mlp.up_proj.weight")])
        state_dict[ours + "feed_forward.w2.weight"] = get(hf + "mlp.down_proj.weight")
        state_dict[ours + "attention_norm.weight"] = get(hf + "input_layernorm.weight")
        state_dict[ours + "ffn_norm.weight"] = get(hf + "post_attention_layernorm.weight")
    state_dict["norm.weight"] = get("model.norm.weight")
    if not args.tie_embeddings:
        state_dict["output.weight"] = get("lm_head.weight")
    for name, shape in state_dict_shapes(args).items():
        if tuple(state_dict[name].shape) != shape:
            raise CheckpointError(f"{hf_dir}: converted {name} has shape {tuple(state_dict[name].shape)}, "
                                  f"{config_path} implies {shape}; config and weights disagree")
    used = {"model.embed_tokens.weight", "model.norm.weight", "lm_head.weight"}
    leftover = [n for n in weights.names() if n not in used and not n.startswith("model.layers.")]
    if leftover:
        raise CheckpointError(f"{hf_dir}: unexpected tensors {leftover[:3]}; not a plain LlamaForCausalLM checkpoint")

    meta = _meta(model_name or hf_dir.name, args, dtype, "huggingface",
                 repo=model_name, revision=revision)
    return write_checkpoint(out_dir, state_dict, tokenizer_path, meta)


# ----------------------------------------------------------------------------- download

# What convert reads; one weight format is picked so Llama 2 repos (both formats) download once.
_CONFIG_PATTERNS = ["config.json", TOKENIZER, f"original/{TOKENIZER}"]
_WEIGHT_PATTERNS = {"safetensors": ["*.safetensors", "model.safetensors.index.json"],
                    "bin": ["pytorch_model*.bin", "pytorch_model.bin.index.json"]}


def _hub_error(repo_id: str, e: Exception, token: Optional[str]) -> CheckpointError:
    import huggingface_hub
    from huggingface_hub import errors

    login = "set HF_TOKEN or run `hf auth login`"
    if isinstance(e, errors.GatedRepoError):
        why = f"you have no access yet: request it at https://huggingface.co/{repo_id}" if token else \
              f"no Hugging Face token found: {login}, after requesting access at https://huggingface.co/{repo_id}"
        msg = f"{repo_id} is a gated repo and {why}"
    elif isinstance(e, errors.RepositoryNotFoundError):
        msg = f"{repo_id}: repository not found; check the name" + ("" if token else f" (or, if private: {login})")
    elif isinstance(e, errors.RevisionNotFoundError):
        msg = f"{repo_id}: revision not found; check --revision"
    elif isinstance(e, (errors.OfflineModeIsEnabled, errors.LocalEntryNotFoundError)):
        offline = huggingface_hub.constants.is_offline_mode()
        why = ("HF_HUB_OFFLINE is set (unset it to download)" if offline
               else f"{huggingface_hub.constants.ENDPOINT} is unreachable (no network?)")
        msg = (f"{repo_id}: cannot download: {why}; download on a machine with network, "
               f"or benchmark a synthetic checkpoint (prepare --synthetic)")
    elif isinstance(e, errors.HfHubHTTPError) and getattr(e.response, "status_code", None) == 401:
        msg = f"{repo_id}: the Hugging Face token was rejected (401); {login} with a valid token"
    else:
        msg = f"{repo_id}: download failed ({e.__class__.__name__}: {(str(e).splitlines() or [''])[0]})"
    if token:
        msg = msg.replace(token, "***")
    return CheckpointError(msg)


def download(repo_id: str, out_dir: str | os.PathLike, revision: str | None = None) -> Path:
    """The files convert needs, via snapshot_download (which fails fast offline, unlike
    hf_hub_download's retries). The token is huggingface_hub's: HF_TOKEN or `hf auth login`."""
    import huggingface_hub

    token = huggingface_hub.get_token()
    fetch = lambda kind: huggingface_hub.snapshot_download(
        repo_id, revision=revision, local_dir=out_dir, token=token,
        allow_patterns=_CONFIG_PATTERNS + _WEIGHT_PATTERNS[kind])
    try:
        # Not HfApi.list_repo_files: it retries ~23 s with no network, snapshot_download fails at once.
        path = Path(fetch("safetensors"))
        if not any(path.glob("*.safetensors")):
            fetch("bin")
    except Exception as e:  # hub errors, plus httpx/OS errors from a broken network
        raise _hub_error(repo_id, e, token) from None
    return path


# ----------------------------------------------------------------------------- CLI

def prepare(model: str, out_dir: str | os.PathLike, synthetic: bool = False, seed: int = 0,
            dtype: str = "bfloat16", revision: str | None = None) -> Path:
    """Registry shape names without an owner (tiny) or --synthetic: synthesize; else download+convert."""
    out_dir = Path(out_dir)
    if synthetic or "/" not in model:
        return synthesize(model, out_dir, seed=seed, dtype=dtype)
    hf_dir = out_dir / "hf"
    download(model, hf_dir, revision=revision)
    convert(hf_dir, out_dir, model_name=model, dtype=dtype, revision=revision)
    shutil.rmtree(hf_dir)  # kept on failure, so a retry resumes the download
    return out_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m llama.checkpoint", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("synthesize", help="seeded random weights + generated tokenizer for a registered shape")
    p.add_argument("--model", required=True, help=f"registry name: {', '.join(ARCHITECTURES)}")
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dtype", default="bfloat16", choices=list(DTYPES))
    p = sub.add_parser("download", help="HF files that convert needs (token: HF_TOKEN or `hf auth login`)")
    p.add_argument("--repo", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--revision")
    p = sub.add_parser("convert", help="HF Llama checkpoint dir -> our layout")
    p.add_argument("--hf_dir", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--model", help="registry name the config must match (and meta.json's model)")
    p.add_argument("--dtype", default="bfloat16", choices=list(DTYPES))
    p = sub.add_parser("prepare", help="download+convert an HF repo, or synthesize a shape (or with --synthetic)")
    p.add_argument("--model", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--synthetic", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dtype", default="bfloat16", choices=list(DTYPES))
    p.add_argument("--revision")
    a = parser.parse_args(argv)
    try:
        if a.command == "synthesize":
            out = synthesize(a.model, a.out, seed=a.seed, dtype=a.dtype)
        elif a.command == "download":
            out = download(a.repo, a.out, revision=a.revision)
        elif a.command == "convert":
            out = convert(a.hf_dir, a.out, model_name=a.model, dtype=a.dtype)
        else:
            out = prepare(a.model, a.out, synthetic=a.synthetic, seed=a.seed, dtype=a.dtype, revision=a.revision)
    except CheckpointError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
