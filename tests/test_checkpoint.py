import json
import os
import shutil
import subprocess
import sys
from dataclasses import replace

import httpx2
import huggingface_hub
import pytest
import torch
from huggingface_hub import errors

import llama.checkpoint as checkpoint
from llama.checkpoint import CheckpointError, convert, download, load, main, prepare, synthesize
from llama.model import ARCHITECTURES

FAKE_TOKEN = "hf_FAKEtoken0123456789abcdef"
REPO = "meta-llama/Llama-3.1-8B"


def copy(ckpt, tmp_path):
    return shutil.copytree(ckpt, tmp_path / "ckpt")


def assert_one_line(e: BaseException):
    assert "\n" not in str(e) and FAKE_TOKEN not in str(e)


# ----------------------------------------------------------------------------- synthesize

def test_same_seed_same_tensors_and_tokenizer(tiny_checkpoint, tmp_path):
    again = synthesize("tiny", tmp_path / "again", seed=0)
    a = torch.load(tiny_checkpoint / "model.pth", weights_only=True)
    b = torch.load(again / "model.pth", weights_only=True)
    assert list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)
    assert (tiny_checkpoint / "tokenizer.model").read_bytes() == (again / "tokenizer.model").read_bytes()


def test_different_seed_differs(tiny_checkpoint, tmp_path):
    a = torch.load(tiny_checkpoint / "model.pth", weights_only=True)
    b = torch.load(synthesize("tiny", tmp_path / "s1", seed=1) / "model.pth", weights_only=True)
    for name in a:
        assert torch.equal(a[name], b[name]) == name.endswith("norm.weight"), name  # norms are ones


@pytest.mark.parametrize("fixture", ["tiny_checkpoint", "tiny_llama2_checkpoint"])
def test_synthesized_checkpoint_loads_like_a_real_one(fixture, request):
    ckpt = request.getfixturevalue(fixture)
    model, tokenizer, meta = load(ckpt)
    args = ARCHITECTURES[meta["model"]]
    assert meta["synthetic"] and meta["source"] == "synthetic" and meta["seed"] == 0 and meta["dtype"] == "bfloat16"
    assert model.config == args and tokenizer.kind == args.tokenizer and tokenizer.vocab_size == args.vocab_size
    w = model.layers[0].attention.wqkv.weight
    assert w.dtype == torch.bfloat16 and 0.018 < w.float().std().item() < 0.022  # initializer_range 0.02
    with torch.no_grad():
        logits = model(torch.tensor([tokenizer.encode("Hello world")]))
    assert torch.isfinite(logits).all() and logits.shape[-1] == args.vocab_size
    assert load(ckpt, dtype="float32")[0].output.weight.dtype == torch.float32


def test_tied_shape_synthesizes_and_reties(tmp_path, monkeypatch):
    monkeypatch.setitem(ARCHITECTURES, "tiny-tied", replace(ARCHITECTURES["tiny"], tie_embeddings=True))
    ckpt = synthesize("tiny-tied", tmp_path / "tied")
    assert "output.weight" not in torch.load(ckpt / "model.pth", weights_only=True)
    model, _, _ = load(ckpt)
    assert model.output.weight is model.tok_embeddings.weight


def test_full_size_tokenizers_have_exact_vocab(tmp_path):
    # What synthesize writes for Llama 2 and Llama 3 shapes (the weights are too big for a unit test).
    from llama.tokenizer import load_tokenizer, synthesize_tokenizer

    for name in ("meta-llama/Llama-2-7b-hf", "meta-llama/Llama-3.1-8B"):
        args = ARCHITECTURES[name]
        path = tmp_path / f"{args.tokenizer}.model"
        path.write_bytes(synthesize_tokenizer(args.tokenizer, args.vocab_size))
        assert load_tokenizer(path).vocab_size == args.vocab_size


def test_unknown_shape():
    with pytest.raises(CheckpointError, match="unknown model 'llama-9000'"):
        synthesize("llama-9000", "/nonexistent")


def test_interrupted_overwrite_is_refused(tiny_checkpoint, tmp_path, monkeypatch):
    ckpt = copy(tiny_checkpoint, tmp_path)

    def dies(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint.torch, "save", dies)
    with pytest.raises(KeyboardInterrupt):
        synthesize("tiny", ckpt, seed=1)
    monkeypatch.undo()
    with pytest.raises(CheckpointError, match="meta.json is missing \\(an interrupted write\\)"):
        load(ckpt)
    assert sorted(p.name for p in ckpt.iterdir()) == ["model.pth", "tokenizer.model"]  # no temp files left


# ----------------------------------------------------------------------------- load errors

def _truncate(path, keep=0.5):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def _edit_meta(ckpt, **changes):
    meta = json.loads((ckpt / "meta.json").read_text())
    for key, value in changes.items():
        if key in meta["args"]:
            meta["args"][key] = value
        else:
            meta[key] = value
    (ckpt / "meta.json").write_text(json.dumps(meta))


DAMAGE = {
    "truncated model.pth": (lambda c: _truncate(c / "model.pth"), r"model.pth: corrupt or truncated"),
    "garbage model.pth": (lambda c: (c / "model.pth").write_bytes(b"\x00" * 1000), r"model.pth: corrupt or truncated"),
    "missing model.pth": (lambda c: (c / "model.pth").unlink(), r"model.pth is missing"),
    "missing meta.json": (lambda c: (c / "meta.json").unlink(), r"meta.json is missing"),
    "corrupt meta.json": (lambda c: (c / "meta.json").write_text("{\"model\": "), r"meta.json: corrupt"),
    "missing tokenizer": (lambda c: (c / "tokenizer.model").unlink(), r"tokenizer.model: cannot read"),
    "tokenizer cut mid-line": (lambda c: _truncate(c / "tokenizer.model", 0.5013), r"tokenizer.model"),
    "tokenizer cut at a line end": (
        lambda c: (c / "tokenizer.model").write_bytes(b"".join((c / "tokenizer.model").read_bytes().splitlines(True)[:700])),
        r"tokenizer.model: 768 tokens but the model has 1024"),
    "more layers than the file": (lambda c: _edit_meta(c, model="custom", n_layers=5), r"model.pth: keys do not match"),
    "wrong shape": (lambda c: _edit_meta(c, model="custom", intermediate_size=512),
                    r"model.pth: layers.0.feed_forward.w13.weight has shape \(1536, 256\)"),
    "args differ from registry": (lambda c: _edit_meta(c, dim=128), r"meta.json: args differ from the registry's 'tiny'"),
}


@pytest.mark.parametrize("damage", DAMAGE)
def test_damaged_checkpoint_gives_one_line_error(damage, tiny_checkpoint, tmp_path):
    ckpt = copy(tiny_checkpoint, tmp_path)
    breaks, message = DAMAGE[damage]
    breaks(ckpt)
    with pytest.raises(CheckpointError, match=message) as e:
        load(ckpt)
    assert_one_line(e.value)


# ----------------------------------------------------------------------------- convert errors (parity: test_hf_parity.py)

def test_convert_errors_name_the_file(tmp_path, tiny_checkpoint):
    hf = tmp_path / "hf"
    hf.mkdir()
    with pytest.raises(CheckpointError, match=r"hf/config.json is missing"):
        convert(hf, tmp_path / "out")
    (hf / "config.json").write_text(json.dumps({"hidden_size": 256, "num_attention_heads": 4}))
    with pytest.raises(CheckpointError, match=r"no tokenizer.model or original/tokenizer.model"):
        convert(hf, tmp_path / "out")
    (hf / "original").mkdir()
    shutil.copy(tiny_checkpoint / "tokenizer.model", hf / "original" / "tokenizer.model")
    with pytest.raises(CheckpointError, match=r"config.json: missing 'num_hidden_layers'"):
        convert(hf, tmp_path / "out")
    (hf / "config.json").write_text(json.dumps(dict(
        hidden_size=256, num_attention_heads=4, num_key_value_heads=2, num_hidden_layers=1, vocab_size=1024,
        intermediate_size=768, max_position_embeddings=4096, rope_theta=500000.0)))
    with pytest.raises(CheckpointError, match=r"no model.safetensors, pytorch_model.bin"):
        convert(hf, tmp_path / "out")
    (hf / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{\"a\": ")  # truncated header
    with pytest.raises(CheckpointError, match=r"model.safetensors: missing, corrupt or truncated") as e:
        convert(hf, tmp_path / "out")
    assert_one_line(e.value)
    assert not (tmp_path / "out" / "meta.json").exists()


# ----------------------------------------------------------------------------- download errors

def _response(status):
    return httpx2.Response(status, request=httpx2.Request("GET", f"https://huggingface.co/api/models/{REPO}"))


HUB_ERRORS = {
    "gated, token": (errors.GatedRepoError("Access restricted", response=_response(403)), FAKE_TOKEN,
                     r"gated repo and you have no access yet: request it at https://huggingface.co/" + REPO),
    "gated, no token": (errors.GatedRepoError("Access restricted", response=_response(401)), None,
                        r"gated repo and no Hugging Face token found: set HF_TOKEN or run `hf auth login`"),
    "wrong name": (errors.RepositoryNotFoundError("404 Not Found", response=_response(404)), FAKE_TOKEN,
                   r"repository not found; check the name$"),
    "wrong name, no token": (errors.RepositoryNotFoundError("401", response=_response(401)), None,
                             r"repository not found; check the name \(or, if private: set HF_TOKEN"),
    "bad revision": (errors.RevisionNotFoundError("404", response=_response(404)), FAKE_TOKEN, r"revision not found"),
    "bad token": (errors.HfHubHTTPError(f"401 Unauthorized for token {FAKE_TOKEN}", response=_response(401)),
                  FAKE_TOKEN, r"the Hugging Face token was rejected \(401\)"),
    "other, token in text": (errors.HfHubHTTPError(f"500 boom Bearer {FAKE_TOKEN}\nmore", response=_response(500)),
                             FAKE_TOKEN, r"download failed \(HfHubHTTPError: 500 boom Bearer \*\*\*\)"),
    "no network": (errors.LocalEntryNotFoundError("Got: ConnectError"), FAKE_TOKEN, r"cannot download: .* is unreachable"),
}


@pytest.mark.parametrize("case", HUB_ERRORS)
def test_download_errors_are_one_line_and_hide_the_token(case, monkeypatch, tmp_path):
    exc, token, message = HUB_ERRORS[case]
    seen = {}

    def snapshot_download(repo_id, **kwargs):
        seen.update(kwargs)
        raise exc

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: token)
    with pytest.raises(CheckpointError, match=message) as e:
        download(REPO, tmp_path / "hf")
    assert str(e.value).startswith(REPO) and FAKE_TOKEN not in str(e.value) and "\n" not in str(e.value)
    assert seen["token"] == token and "config.json" in seen["allow_patterns"]


def test_download_picks_one_weight_format(monkeypatch, tmp_path):
    calls = []

    def snapshot_download(repo_id, allow_patterns, local_dir, **kwargs):  # a repo with only .bin weights
        calls.append(allow_patterns)
        return str(local_dir)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    download(REPO, tmp_path)
    assert "*.safetensors" in calls[0] and "pytorch_model*.bin" not in calls[0]
    assert "pytorch_model*.bin" in calls[1] and len(calls) == 2


def _cli(*args, **env):
    full_env = dict(os.environ, HF_HOME=str(env.pop("hf_home")), HF_TOKEN=FAKE_TOKEN, **env)
    return subprocess.run([sys.executable, "-m", "llama.checkpoint", *args], capture_output=True, text=True,
                          env=full_env, timeout=120)


@pytest.mark.parametrize("env, message", [({"HF_HUB_OFFLINE": "1"}, "HF_HUB_OFFLINE is set"),
                                          ({"HF_ENDPOINT": "http://127.0.0.1:9"}, "http://127.0.0.1:9 is unreachable")])
def test_download_cli_really_offline(env, message, tmp_path):
    # Real huggingface_hub, no network (an endpoint on the discard port refuses connections): exit 2, fast.
    out = _cli("download", "--repo", REPO, "--out", str(tmp_path / "hf"), hf_home=tmp_path / "home", **env)
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.startswith(f"error: {REPO}: cannot download: {message}") and out.stderr.count("\n") == 1
    assert FAKE_TOKEN not in out.stderr


# ----------------------------------------------------------------------------- CLI

def test_cli_synthesize_and_errors(tmp_path, capsys):
    assert main(["synthesize", "--model", "tiny-llama2", "--out", str(tmp_path / "a"), "--seed", "2"]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "a")
    assert json.loads((tmp_path / "a" / "meta.json").read_text())["seed"] == 2
    assert main(["synthesize", "--model", "nope", "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unknown model 'nope'") and err.count("\n") == 1
    assert main(["convert", "--hf_dir", str(tmp_path / "missing"), "--out", str(tmp_path / "c")]) == 2
    assert "missing/config.json is missing" in capsys.readouterr().err


def test_prepare_routes_shapes_to_synthesize_and_repos_to_download(tmp_path, monkeypatch):
    assert load(prepare("tiny", tmp_path / "tiny"))[2]["synthetic"]
    monkeypatch.setattr(huggingface_hub, "snapshot_download",
                        lambda repo_id, **kw: (_ for _ in ()).throw(errors.LocalEntryNotFoundError("offline")))
    with pytest.raises(CheckpointError, match=f"{REPO}: cannot download"):
        prepare(REPO, tmp_path / "hf")
    assert not (tmp_path / "hf" / "meta.json").exists()
