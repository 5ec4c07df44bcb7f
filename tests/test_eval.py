"""llama.eval: the lm-eval wrapper is exact, quantization moves perplexity a little, offline fails fast.

    pytest tests/test_eval.py -x -q      # about 2 minutes on 2 busy cores
"""
import dataclasses
import json
import math
import shutil
import time

import pytest
import torch
from lm_eval.api.instance import Instance

from llama import eval as ev
from llama.checkpoint import convert, load
from llama.model import Transformer
from llama.results import COMMON_FIELDS, EVAL_FIELDS, read_result


@pytest.fixture(autouse=True)
def _private_hf_home(tmp_path, monkeypatch):
    # The local task's dataset cache goes to a fresh dir, never to the user's ~/.cache.
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "datasets"))


def corpus() -> list[str]:
    return [p.read_text() for p in sorted((ev.DATA_DIR / "corpus").glob("*.txt"))]


def test_corpus_is_shippable_and_has_documents_longer_than_the_window(tiny_checkpoint):
    assert "CC0" in (ev.DATA_DIR / "README.md").read_text()
    _, tokenizer, _ = load(tiny_checkpoint)
    lengths = [len(tokenizer.encode(doc, bos=False)) for doc in corpus()]
    assert len(lengths) >= 8 and max(lengths) > ev.DEFAULT_MAX_SEQ_LEN and min(lengths) < 512


def test_uniform_model_gets_exact_bits_per_byte(tiny_checkpoint):
    """All-zero logits: every token costs log2(V) bits, so bits/byte = tokens * log2(V) / bytes."""
    tiny, tokenizer, _ = load(tiny_checkpoint)
    model = Transformer(dataclasses.replace(tiny.config, n_layers=1))  # one layer: the logits are zero anyway
    torch.nn.init.zeros_(model.output.weight)
    lm = ev.LlamaLM(model, tokenizer, batch_size=4, max_length=512)  # the long document spans ~10 windows
    metrics, stderr, _ = ev.evaluate(lm, ev.LOCAL_TASK, limit=None, num_fewshot=None)

    docs = corpus()
    n_tokens = sum(len(tokenizer.encode(d, bos=False)) for d in docs)
    n_bytes = sum(len(d.encode("utf-8")) for d in docs)
    expected_bpb = n_tokens * math.log2(model.config.vocab_size) / n_bytes
    assert metrics["bits_per_byte"] == pytest.approx(expected_bpb, rel=1e-6)  # fp32 log_softmax rounding
    assert metrics["byte_perplexity"] == pytest.approx(2 ** expected_bpb, rel=1e-6)
    assert set(stderr) == {"word_perplexity", "byte_perplexity", "bits_per_byte"}


@pytest.fixture(scope="module")
def hf_checkpoint(tiny_checkpoint, tmp_path_factory):
    """A tiny transformers LlamaForCausalLM (fp32, llama3 RoPE) and its conversion to our format."""
    from transformers import LlamaConfig, LlamaForCausalLM

    hf_dir = tmp_path_factory.mktemp("hf")
    config = LlamaConfig(vocab_size=1024, hidden_size=64, intermediate_size=160, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                         rms_norm_eps=1e-5, initializer_range=0.2, tie_word_embeddings=False,
                         bos_token_id=1008, eos_token_id=1009, pad_token_id=1009,
                         rope_parameters=dict(rope_type="llama3", rope_theta=500000.0, factor=8.0, low_freq_factor=1.0,
                                              high_freq_factor=4.0, original_max_position_embeddings=32))
    torch.manual_seed(0)
    hf = LlamaForCausalLM(config).eval()
    hf.save_pretrained(hf_dir)
    shutil.copy(tiny_checkpoint / "tokenizer.model", hf_dir / "tokenizer.model")
    return hf, convert(hf_dir, tmp_path_factory.mktemp("ours"), dtype="float32")


@pytest.fixture(scope="module")
def hf_pair(hf_checkpoint):
    hf, ours_dir = hf_checkpoint
    model, tokenizer, _ = load(ours_dir, "cpu", torch.float32)
    assert (tokenizer.bos_id, tokenizer.eos_id) == (hf.config.bos_token_id, hf.config.eos_token_id)
    return hf, ev.LlamaLM(model, tokenizer, batch_size=3, max_length=64), tokenizer


@torch.no_grad()
def hf_logprob(hf, inputs: list[int], targets: list[int]) -> float:
    """transformers' log p(targets) where targets are the last len(targets) next tokens of inputs."""
    logprobs = hf(torch.tensor([inputs])).logits[0, -len(targets):].double().log_softmax(-1)
    return logprobs.gather(-1, torch.tensor(targets)[:, None]).sum().item()


def test_loglikelihood_matches_transformers(hf_pair):
    hf, lm, tokenizer = hf_pair
    pairs = [("The kettle takes", " a little longer"), ("", "Bread is flour, water, salt"),
             ("A number without a unit is", " a rumour."), ("Compilers", " fuse loops")]
    got = lm.loglikelihood([Instance("loglikelihood", {}, pair, i) for i, pair in enumerate(pairs)])
    for (context, continuation), (score, _) in zip(pairs, got):
        whole = tokenizer.encode(context + continuation)  # BOS first, as the wrapper does
        n_context = len(tokenizer.encode(context)) if context else 1
        assert score == pytest.approx(hf_logprob(hf, whole[:-1], whole[n_context:]), abs=1e-4, rel=1e-6)


def test_rolling_loglikelihood_matches_transformers_across_windows(hf_pair):
    hf, lm, tokenizer = hf_pair
    docs = corpus()[:2]
    got = lm.loglikelihood_rolling([Instance("loglikelihood_rolling", {}, (d,), i) for i, d in enumerate(docs)])
    window = lm.max_length
    for doc, score in zip(docs, got):
        tokens = tokenizer.encode(doc, bos=False)
        assert len(tokens) > 3 * window
        # Window k predicts tokens[k*W:(k+1)*W], seeing only the W inputs that end before its last
        # target (so the last, partial window also sees the end of the one before it).
        shifted = [tokenizer.bos_id] + tokens
        ends = [min(s + window, len(tokens)) for s in range(0, len(tokens), window)]
        expected = sum(hf_logprob(hf, shifted[max(0, e - window):e], tokens[s:e]) for s, e in zip(range(0, len(tokens), window), ends))
        assert score == pytest.approx(expected, rel=1e-7)  # measured: ~1e-8


def test_generate_until_matches_transformers_greedy(hf_pair):
    hf, lm, tokenizer = hf_pair
    prompt = "Notes on benchmarking: warm up before you measure"
    text, = lm.generate_until([Instance("generate_until", {}, (prompt, {"until": ["\n\n\n"], "max_gen_toks": 12}), 0)])
    ids = torch.tensor([tokenizer.encode(prompt)])
    reference = hf.generate(ids, max_new_tokens=12, do_sample=False)[0, ids.shape[1]:].tolist()
    if tokenizer.eos_id in reference:
        reference = reference[:reference.index(tokenizer.eos_id)]
    assert text == tokenizer.decode(reference).split("\n\n\n")[0]


def test_quantization_moves_perplexity_a_little(tiny_checkpoint):
    """Measured on the seed-0 tiny checkpoint (bf16, 4 docs, 256-token windows): bits/byte 6.5515;
    int8wo moved it by 6e-5, int4wo-64 by 9e-3. Bounds are ~10x that, and it must move at all."""
    from llama import techniques

    bpb = {}
    for technique in ("none", "int8wo", "int4wo-64"):
        model, tokenizer, _ = load(tiny_checkpoint, "cpu", torch.bfloat16)
        techniques.apply(model, technique, "cpu", torch.bfloat16)
        metrics, _, _ = ev.evaluate(ev.LlamaLM(model, tokenizer, batch_size=4, max_length=256), ev.LOCAL_TASK, 4, None)
        bpb[technique] = metrics["bits_per_byte"]
    assert 0 < abs(bpb["int8wo"] - bpb["none"]) < 1e-3
    assert 1e-4 < abs(bpb["int4wo-64"] - bpb["none"]) < 0.1


@pytest.mark.parametrize("env", [{"HF_HUB_OFFLINE": "1"}, {"HF_ENDPOINT": "http://127.0.0.1:9"}],
                         ids=["offline-flag", "no-network"])
def test_hub_task_offline_fails_fast_with_a_clear_message(env, hf_checkpoint, tmp_path, monkeypatch, capsys):
    import datasets.config
    from huggingface_hub import constants

    for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "HF_ENDPOINT", "HTTPS_PROXY", "https_proxy",
                 "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    # No dataset cached: nothing lm-eval could load offline (the modules read HF_HOME at import).
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "datasets")
    start = time.monotonic()
    # No --task: a real (converted) checkpoint defaults to wikitext.
    code = ev.main(["--checkpoint", str(hf_checkpoint[1]), "--out", str(tmp_path / "r.json")])
    assert time.monotonic() - start < 5
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "'wikitext'" in err and "unreachable" in err and "--task llama_local_ppl" in err
    assert not (tmp_path / "r.json").exists()


def test_cli_writes_a_complete_result(tiny_checkpoint, tmp_path, capsys):
    out = tmp_path / "eval" / "tiny.json"
    # No --task: a synthetic checkpoint defaults to the offline local task.
    argv = ["--checkpoint", str(tiny_checkpoint), "--technique", "kv-int8", "--out", str(out), "--limit", "2",
            "--num_fewshot", "0", "--batch_size", "2", "--max_seq_len", "128", "--device", "cpu", "--precision", "float32"]
    assert ev.main(argv) == 0
    result = read_result(out)
    assert set(result) == set(COMMON_FIELDS) | set(EVAL_FIELDS)
    assert [k for k, v in result.items() if v is None] == []
    assert result["status"] == "ok" and result["reason"] == "" and result["kind"] == "eval"
    assert (result["model"], result["synthetic"], result["technique"]) == ("tiny", True, "kv-int8")
    assert (result["task"], result["limit"], result["num_fewshot"], result["max_seq_len"]) == ("llama_local_ppl", 2, 0, 128)
    assert set(result["metrics"]) == {"word_perplexity", "byte_perplexity", "bits_per_byte"}
    assert all(math.isfinite(v) and v > 0 for v in result["metrics"].values())
    assert result["command"].startswith("python -m llama.eval --checkpoint ")
    assert result["env"]["torch"] == torch.__version__
    stdout = capsys.readouterr().out
    assert "bits_per_byte" in stdout and "synthetic" in stdout


def test_unsupported_oom_and_bad_input(tiny_checkpoint, tmp_path, monkeypatch, capsys):
    base = ["--checkpoint", str(tiny_checkpoint), "--device", "cpu"]
    assert ev.main(base + ["--technique", "float8dq-row", "--out", str(tmp_path / "u.json")]) == 0
    unsupported = json.loads((tmp_path / "u.json").read_text())
    assert unsupported["status"] == "unsupported" and "8.9" in unsupported["reason"]

    def out_of_memory(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB\nmore detail")
    monkeypatch.setattr(ev, "evaluate", out_of_memory)
    assert ev.main(base + ["--out", str(tmp_path / "o.json")]) == 0
    oom = read_result(tmp_path / "o.json")
    assert oom["status"] == "oom" and oom["reason"] == "CUDA out of memory. Tried to allocate 2.00 GiB"

    capsys.readouterr()
    assert ev.main(base + ["--technique", "int3wo", "--out", str(tmp_path / "b.json")]) == 2
    assert ev.main(["--checkpoint", str(tmp_path / "missing"), "--out", str(tmp_path / "b.json")]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 2 and "int3wo" in errors[0] and "missing" in errors[1]
    assert not (tmp_path / "b.json").exists()


def test_kv_cache_formats_are_scored_through_their_cache(tiny_checkpoint):
    """A KV technique changes nothing in a cache-free forward, so eval prefills through the cache.
    Measured (seed-0 tiny, bf16, 4 docs, 256-token windows): int8 KV moved bits/byte by ~2e-4,
    int4 KV by ~1e-3; the bf16 prefix-only path matches the plain one exactly."""
    from llama import techniques

    bpb = {}
    for technique in ("none", "kv-prefix", "kv-int8", "kv-int4"):
        model, tokenizer, _ = load(tiny_checkpoint, "cpu", torch.bfloat16)
        options = techniques.apply(model, technique, "cpu", torch.bfloat16)
        lm = ev.LlamaLM(model, tokenizer, batch_size=4, max_length=256, kv_cache=options.kv_cache, mask=options.mask)
        bpb[technique] = ev.evaluate(lm, ev.LOCAL_TASK, 4, None)[0]["bits_per_byte"]
    print(bpb)
    assert abs(bpb["kv-prefix"] - bpb["none"]) < 2e-3
    assert 0 < abs(bpb["kv-int8"] - bpb["none"]) < 2e-3
    assert abs(bpb["kv-int8"] - bpb["none"]) < abs(bpb["kv-int4"] - bpb["none"]) < 2e-2
