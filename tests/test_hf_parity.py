"""Our converted model against transformers' LlamaForCausalLM: tiny fp32 checkpoints in every HF
layout we convert; logits must agree (relative error < 1e-4) for prefill and for cached decode."""
import json

import pytest
import torch

transformers = pytest.importorskip("transformers")

from llama.checkpoint import CheckpointError, convert, load
from llama.tokenizer import synthesize_tokenizer

VOCAB, SEQ, PREFILL = 512, 24, 8
LLAMA3_ROPE = dict(rope_type="llama3", rope_theta=500000.0, factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
                   original_max_position_embeddings=32)

CASES = {
    "llama2": dict(n_kv_heads=4, rope=dict(rope_type="default", rope_theta=10000.0), tokenizer="sentencepiece"),
    "llama31-gqa": dict(n_kv_heads=2, rope=LLAMA3_ROPE, tokenizer="tiktoken"),
    "llama32-tied": dict(n_kv_heads=2, rope=dict(LLAMA3_ROPE, factor=32.0), tokenizer="tiktoken", tied=True),
    "llama31-sharded": dict(n_kv_heads=2, rope=LLAMA3_ROPE, tokenizer="tiktoken", save=dict(max_shard_size="100KB")),
    "llama2-bin": dict(n_kv_heads=4, rope=dict(rope_type="default", rope_theta=10000.0), tokenizer="sentencepiece",
                       pytorch_bin=True),
    "llama31-old-rope-layout": dict(n_kv_heads=2, rope=LLAMA3_ROPE, tokenizer="tiktoken", old_layout=True),
}


def make_hf_checkpoint(path, n_kv_heads, rope, tokenizer, tied=False, save=None, old_layout=False, pytorch_bin=False):
    config = transformers.LlamaConfig(
        vocab_size=VOCAB, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=n_kv_heads, max_position_embeddings=128, rms_norm_eps=1e-5, rope_parameters=rope,
        tie_word_embeddings=tied)
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(config).float().eval()
    with torch.no_grad():  # norms away from 1 so a mis-mapped norm shows in the logits
        for name, p in model.named_parameters():
            if "norm" in name:
                p.uniform_(0.5, 1.5)
    model.save_pretrained(path, **(save or {}))
    if pytorch_bin:  # transformers 5 only writes safetensors; older repos (Llama 2 era) ship this
        (path / "model.safetensors").unlink()
        torch.save(model.state_dict(), path / "pytorch_model.bin")
    if old_layout:  # what the hub's Llama 3.1 config.json holds: rope_theta + rope_scaling
        cfg = json.loads((path / "config.json").read_text())
        params = cfg.pop("rope_parameters")
        cfg["rope_theta"] = params.pop("rope_theta")
        cfg["rope_scaling"] = params
        (path / "config.json").write_text(json.dumps(cfg))
    # Llama 3 repos keep the tiktoken file under original/, Llama 2 the sentencepiece one at the root.
    tok_path = path / ("original/tokenizer.model" if tokenizer == "tiktoken" else "tokenizer.model")
    tok_path.parent.mkdir(exist_ok=True)
    tok_path.write_bytes(synthesize_tokenizer(tokenizer, VOCAB, seed=1))
    return model


def rel_err(ours, ref):
    return ((ours - ref).norm() / ref.norm()).item()


@pytest.mark.parametrize("case", CASES)
def test_logits_match_transformers(case, tmp_path):
    spec = CASES[case]
    hf_dir = tmp_path / "hf"
    hf_model = make_hf_checkpoint(hf_dir, **spec)
    files = {p.name for p in hf_dir.iterdir()}
    assert ("model.safetensors.index.json" in files) == ("save" in spec)
    assert ("pytorch_model.bin" in files) == spec.get("pytorch_bin", False)

    ckpt = convert(hf_dir, tmp_path / "ours", dtype="float32")
    model, tokenizer, meta = load(ckpt)
    assert meta["source"] == "huggingface" and not meta["synthetic"]
    assert tokenizer.kind == spec["tokenizer"] and tokenizer.vocab_size == VOCAB
    assert model.config.tie_embeddings == spec.get("tied", False)
    assert model.config.rope_scaling == ({k: v for k, v in spec["rope"].items() if k not in ("rope_type", "rope_theta")}
                                         if spec["rope"]["rope_type"] == "llama3" else None)

    tokens = torch.randint(0, VOCAB, (1, SEQ), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = hf_model(tokens).logits
        assert rel_err(model(tokens), ref) < 1e-4  # prefill, no cache

        model.setup_caches(max_batch_size=1, cache_size=64)
        prefill = model(tokens[:, :PREFILL], input_pos=torch.arange(PREFILL))
        assert rel_err(prefill, ref[:, :PREFILL]) < 1e-4
        for t in range(PREFILL, SEQ):  # step-by-step decode through the KV cache
            step = model(tokens[:, t:t + 1], input_pos=torch.tensor([t]))
            assert rel_err(step[:, 0], ref[:, t]) < 1e-4, f"decode step {t}"


def test_tied_checkpoint_shares_weights(tmp_path):
    make_hf_checkpoint(tmp_path / "hf", **CASES["llama32-tied"])
    model, _, _ = load(convert(tmp_path / "hf", tmp_path / "ours", dtype="float32"))
    assert model.output.weight is model.tok_embeddings.weight
    assert "output.weight" not in torch.load(tmp_path / "ours/model.pth", weights_only=True)


def test_registry_mismatch_is_an_error(tmp_path):
    make_hf_checkpoint(tmp_path / "hf", **CASES["llama31-gqa"])
    with pytest.raises(CheckpointError, match=r"config.json does not match registry shape 'tiny'"):
        convert(tmp_path / "hf", tmp_path / "ours", model_name="tiny")
    assert not (tmp_path / "ours" / "meta.json").exists()
