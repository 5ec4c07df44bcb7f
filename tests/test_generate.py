"""The generate benchmark: its numbers, its JSON, and its statuses (ok / oom / unsupported, exit 2)."""
import json
import statistics
from functools import partial

import pytest
import torch

from llama import generate, results, techniques
from torch._dynamo.utils import counters

from llama.model import ARCHITECTURES, Int8KVCache, Transformer

FAST = ["--max_new_tokens", "6", "--num_samples", "2", "--warmup", "1"]


def tiny_model():
    torch.manual_seed(0)
    return Transformer(ARCHITECTURES["tiny"]).to(torch.bfloat16).eval()


def run(tmp_path, checkpoint, *args):
    out = tmp_path / "result.json"
    code = generate.main(["--checkpoint", str(checkpoint), "--out", str(out), "--device", "cpu", *args])
    return code, (json.loads(out.read_text()) if out.exists() else None)


@pytest.mark.parametrize("compiled", [False, True])  # GraphedDecode compiles it for --compile block
def test_sample_is_greedy_or_within_top_k(compiled):
    sample = torch.compile(generate.sample, dynamic=False) if compiled else generate.sample
    logits = torch.randn(4, 50, generator=torch.Generator().manual_seed(0))
    best = logits.argmax(-1, keepdim=True)
    assert torch.equal(sample(logits, 0.0, None), best)
    assert torch.equal(sample(logits, 1.0, 1), best)
    top3 = logits.topk(3).indices
    drawn = torch.cat([sample(logits, 2.0, 3) for _ in range(20)], dim=1)
    assert drawn.shape == (4, 20) and (drawn[..., None] == top3[:, None]).any(-1).all()
    assert any(len(row.unique()) > 1 for row in drawn)  # a random draw, not a fixed pick per row


def test_benchmark_numbers_are_consistent():
    model = tiny_model()
    weights = techniques.model_size_bytes(model)
    options = techniques.apply(model, "kv-int8+linear-mask", "cpu", torch.bfloat16)
    batch, prompt_len, new = 2, 5, 6
    prompt = torch.randint(0, 1024, (batch, prompt_len))
    settings = generate.Settings(batch_size=batch, max_new_tokens=new, num_samples=3, warmup=1)
    r = generate.benchmark(model, prompt, settings, options)

    config = ARCHITECTURES["tiny"]
    assert r["cache_size"] == 128  # 11 tokens rounded up
    assert r["model_size_bytes"] == weights
    # int8 K and V + a bf16 scale per (batch, head, slot), per layer
    slots = batch * config.n_kv_heads * r["cache_size"]
    assert r["kv_cache_bytes"] == config.n_layers * 2 * slots * (config.head_dim + 2)
    assert isinstance(model.layers[0].attention.kv_cache, Int8KVCache)
    # weights read per step: everything but the embedding table, plus one table row per sequence
    table = config.vocab_size * config.dim * 2
    assert r["bytes_per_token"] == weights - table + batch * config.dim * 2 + r["kv_cache_bytes"]
    assert r["bandwidth_gb_s"] == pytest.approx(r["bytes_per_token"] * r["decode_tok_s_median"] / batch / 1e9)

    samples = r["samples"]
    assert len(samples) == 3
    tok_s = [batch * new / (s["ttft_s"] + s["decode_s"]) for s in samples]
    decode_tok_s = [batch * (new - 1) / s["decode_s"] for s in samples]
    assert r["tok_s_median"] == pytest.approx(statistics.median(tok_s))
    assert r["decode_tok_s_median"] == pytest.approx(statistics.median(decode_tok_s))
    assert r["tok_s_min"] <= r["tok_s_median"] <= r["tok_s_max"]
    assert r["decode_tok_s_min"] == pytest.approx(min(decode_tok_s))
    assert r["decode_tok_s_cv"] == pytest.approx(statistics.pstdev(decode_tok_s) / statistics.fmean(decode_tok_s))
    assert r["ttft_s_median"] == pytest.approx(statistics.median(s["ttft_s"] for s in samples))
    assert r["warmup_s"] > 0 and r["peak_alloc_bytes"] > 0 and r["peak_reserved_bytes"] >= r["peak_alloc_bytes"]


def test_tied_embeddings_table_read_once():
    import dataclasses
    torch.manual_seed(0)
    model = Transformer(dataclasses.replace(ARCHITECTURES["tiny"], tie_embeddings=True)).to(torch.bfloat16)
    # the output projection reads the whole (shared) table; the lookup one row more
    assert generate.weight_bytes_per_step(model, 1) == techniques.model_size_bytes(model) + 256 * 2


def test_cache_size_rules():
    fits = generate.Settings(max_new_tokens=200)
    assert generate.resolve_cache_size(6, fits, 4096) == 256
    assert generate.resolve_cache_size(6, fits, 230) == 230  # rounding stops at max_seq_len
    with pytest.raises(generate.ContextError, match="exceeds the model's max_seq_len 4096"):
        generate.resolve_cache_size(6, generate.Settings(cache_size=5000), 4096)
    with pytest.raises(generate.ContextError, match="does not fit cache_size 100"):
        generate.resolve_cache_size(50, generate.Settings(cache_size=100, max_new_tokens=51), 4096)


def test_generate_json_has_every_field(tmp_path, tiny_checkpoint, capsys):
    from llama.kernels import gemv, pdl
    with pdl.only({"int4"}):  # the JSON says which kernels this run launched with PDL
        code, r = run(tmp_path, tiny_checkpoint, "--technique", "int8wo+linear-mask", "--prefill_size", "7",
                      "--batch_size", "2", *FAST)
    assert code == 0
    assert list(r) == list(results.COMMON_FIELDS) + list(results.GENERATE_FIELDS)
    assert r["status"] == "ok" and r["reason"] == ""
    missing = [k for k, v in r.items() if v is None]
    assert missing == [], f"fields left empty: {missing}"
    assert r["kernel_settings"] == {"gemv_configs": {k: list(v) for k, v in gemv.GEMV_CONFIGS.items()},
                                    "pdl_kernels": ["int4"], "decode_step_flags": [],
                                    "inductor": {}}  # torchao's int8wo: tuned
    assert r["model"] == "tiny" and r["synthetic"] is True and r["prompt_tokens"] == 7
    assert r["command"].startswith("python -m llama.generate --checkpoint")
    assert r["env"]["torch"] == torch.__version__
    assert r["bandwidth_fraction"] == pytest.approx(r["bandwidth_gb_s"] / r["copy_bandwidth_gb_s"])
    assert r["bandwidth_gb_s"] == pytest.approx(r["bytes_per_token"] * r["decode_tok_s_median"] / 2 / 1e9)
    assert r["model_size_bytes"] < 0.6 * sum(p.numel() * 2 for p in tiny_model().parameters())
    assert results.read_result(tmp_path / "result.json") == r
    assert "tok/s" in capsys.readouterr().out


def test_compiled_cpu_run(tmp_path, tiny_checkpoint):
    code, r = run(tmp_path, tiny_checkpoint, "--compile", "--compile_prefill", "--temperature", "0", *FAST)
    assert code == 0 and r["status"] == "ok" and r["compile"] == "full" and r["compile_prefill"] is True
    assert r["prompt_tokens"] > 1 and r["decode_tok_s_median"] > 0


def test_compile_flag_takes_a_mode(capsys):
    required = ["--checkpoint", "ckpt", "--out", "run.json"]
    assert generate.parse_args(required).compile == "none"
    assert generate.parse_args([*required, "--compile"]).compile == "full"  # the bare flag, as before
    assert generate.parse_args([*required, "--compile", "--compile_prefill"]).compile == "full"
    assert generate.parse_args([*required, "--compile", "block"]).compile == "block"
    assert generate.parse_args([*required, "--compile", "graph"]).compile == "graph"
    with pytest.raises(SystemExit):
        generate.parse_args([*required, "--compile", "bogus"])
    assert "invalid choice: 'bogus'" in capsys.readouterr().err
    with pytest.raises(ValueError, match="compile must be one of"):
        generate.Settings(compile=True)


def graphed_and_eager_greedy(prompt_lengths, kv_cache="model", **graphed_kwargs):
    """Greedy tokens of a tiny model for prompts of these lengths: GraphedDecode(**graphed_kwargs)'s and
    the eager decode loop's, and how many graphs dynamo compiled for the GraphedDecode."""
    torch.manual_seed(0)
    model = Transformer(ARCHITECTURES["tiny"]).eval()
    model.setup_caches(1, 64, kv_cache=kv_cache)
    settings = generate.Settings(max_new_tokens=8, temperature=0)
    eager = partial(generate.decode_loop, model, generate.decode_one_token, 0, None)
    prompts = [torch.randint(0, 1024, (1, n)) for n in prompt_lengths]
    no_sync = lambda: None  # noqa: E731
    with torch.no_grad():
        want = [generate.generate_once(model, p, settings, generate.eager_prefill, eager, no_sync)[0] for p in prompts]
        torch._dynamo.reset()
        graphs = counters["stats"]["unique_graphs"]
        graphed = generate.GraphedDecode(model, 0, None, **graphed_kwargs)
        got = [generate.generate_once(model, p, settings, generate.eager_prefill, graphed.decode, no_sync)[0]
               for p in prompts]
    assert all(torch.equal(g, w) for g, w in zip(got, want)), (got, want)
    return model, counters["stats"]["unique_graphs"] - graphs


def test_block_decode_compiles_one_block_and_matches_eager_greedy():
    # float32: in bf16 any compiled decode (full as much as block) can flip a near-tie against eager.
    _, compiled = graphed_and_eager_greedy((5, 9))
    # One compiled block serves all 4 layers, plus the norm and the sampling; prefill (a new shape per
    # prompt) compiles nothing.
    assert compiled == 3


def test_whole_step_decode_compiles_the_forward_once_and_matches_eager_greedy():
    # GraphedDecode(whole_step=True), bf16's ours path in benchmarks/decode_roofline.py: the model's
    # forward as ONE compiled graph (kernels may fuse across blocks), not a block reused per layer.
    model, compiled = graphed_and_eager_greedy((6,), whole_step=True)
    assert compiled == 2  # the forward and the sampling
    assert not any(getattr(layer, "_compiled_call_impl", None) for layer in model.layers)


def test_graph_decode_compiles_nothing_and_matches_eager_greedy(tmp_path, tiny_checkpoint):
    # --compile graph: GraphedDecode with eager blocks. Same tokens as the eager loop, no graph compiled.
    _, compiled = graphed_and_eager_greedy((7,), kv_cache="int8-fused", compiled=False)
    assert compiled == 0
    code, r = run(tmp_path, tiny_checkpoint, "--compile", "graph", *FAST)
    assert code == 0 and r["status"] == "ok" and r["compile"] == "graph"


def test_block_compiled_cpu_run(tmp_path, tiny_checkpoint, capsys):
    code, r = run(tmp_path, tiny_checkpoint, "--compile", "block", *FAST)  # sampling (temperature 0.8) compiled too
    assert code == 0 and r["status"] == "ok" and r["compile"] == "block" and r["compile_prefill"] is False
    assert r["decode_tok_s_median"] > 0 and r["warmup_s"] > 0
    assert "decode compile block" in capsys.readouterr().out


def test_oom_is_a_result(tmp_path, tiny_checkpoint):
    # KV caches of 300k sequences x 4096 slots need ~2.4 TB: malloc refuses at once, no page is touched.
    code, r = run(tmp_path, tiny_checkpoint, "--batch_size", "300000", "--cache_size", "4096", *FAST)
    assert code == 0
    assert r["status"] == "oom" and "allocate" in r["reason"]
    assert r["batch_size"] == 300000 and r["decode_tok_s_median"] is None


def test_host_memory_is_checked_before_cpu_caches(tmp_path, tiny_checkpoint, monkeypatch):
    # Where Linux overcommits (vm.overcommit_memory=1) test_oom_is_a_result's allocation succeeds and
    # the OOM killer ends the process (seen on the lent GPU host), so CPU runs check MemAvailable
    # first. Here the host has 1 MiB left: the tiny model's caches and quadratic mask fit at 64 slots
    # (0.1 MiB), not at 2048 (8 MiB).
    monkeypatch.setattr(generate, "host_memory_available", lambda: 2**20)
    code, r = run(tmp_path, tiny_checkpoint, "--cache_size", "2048", *FAST)
    assert code == 0 and r["status"] == "oom"
    assert r["reason"].startswith("cannot allocate") and "GiB of KV caches on the host: 0.0 GiB available" in r["reason"]
    code, r = run(tmp_path, tiny_checkpoint, "--cache_size", "64", *FAST)
    assert code == 0 and r["status"] == "ok"


@pytest.mark.parametrize("kv_cache,mask", [("model", "quadratic"), ("model", "linear"), ("int8", "quadratic"),
                                           ("prefix", "quadratic"), ("int4-fused", "linear")])
def test_cache_bytes_is_what_setup_caches_allocates(kv_cache, mask):
    # check_host_memory's figure: computed on the meta device, it must equal the real allocation.
    import llama.kernels.kv_caches  # noqa: F401  (registers the prefix caches)
    model = tiny_model()
    expected = model.cache_bytes(2, 96, kv_cache=kv_cache, mask=mask)
    model.setup_caches(2, 96, kv_cache=kv_cache, mask=mask)
    mask_bytes = 0 if model.causal_mask is None else model.causal_mask.numel()
    assert expected == generate.kv_bytes(model)[0] + mask_bytes > 0


def test_unsupported_is_a_result(tmp_path, tiny_checkpoint):
    code, r = run(tmp_path, tiny_checkpoint, "--technique", "int8wo+float8dq-row", *FAST)
    assert (code, r) == (2, None)  # two weight techniques: bad input
    code, r = run(tmp_path, tiny_checkpoint, "--technique", "float8dq-row+kv-int8", *FAST)
    assert code == 0
    assert r["status"] == "unsupported" and "compute capability >= 8.9" in r["reason"]
    assert list(r) == list(results.COMMON_FIELDS) + list(results.GENERATE_FIELDS)


@pytest.mark.parametrize("args, message", [
    (["--cache_size", "5000"], "exceeds the model's max_seq_len 4096"),
    (["--prefill_size", "50", "--cache_size", "52"], "does not fit cache_size 52"),
    (["--cache_size", "8"], "does not fit cache_size 8"),  # the text prompt alone is longer
    (["--technique", "int3wo"], "unknown technique 'int3wo'; known: none, int8wo"),
])
def test_bad_input_is_one_line_exit_2(tmp_path, tiny_checkpoint, capsys, args, message):
    code, r = run(tmp_path, tiny_checkpoint, *args, *FAST)
    err = capsys.readouterr().err.strip()
    assert (code, r) == (2, None)
    assert message in err and len(err.splitlines()) == 1


@pytest.mark.parametrize("vocab", [5, 1000, 1024, 128256])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_two_stage_argmax_is_torchs(vocab, dtype):
    """Greedy sampling's argmax in two stages gives torch.argmax's index, ties (first wins) included,
    for vocabularies that are and are not whole chunks."""
    from llama.generate import argmax
    torch.manual_seed(vocab)
    for _ in range(10):
        x = torch.randn(3, vocab).to(dtype)
        x[1, vocab // 3] = x[1, vocab - 1] = x[1].max() + 1  # a tie across chunks
        x[2] = 0.0  # all tied: index 0
        assert torch.equal(argmax(x), torch.argmax(x, -1, keepdim=True))


@pytest.mark.skipif(not torch.cuda.is_available() or torch.cuda.get_device_capability() < (9, 0),
                    reason="PDL needs CUDA, sm_90+")
@pytest.mark.parametrize("scheme", ["none", "int8", "int4"])
def test_graphed_decode_with_pdl_gives_the_serial_tokens(scheme):
    # The whole decode step in one CUDA graph, blocks eager (deterministic: nothing autotuned), at
    # Llama-3.1-8B's layer shapes: our GEMV and fused decode-step kernels launched with PDL
    # (llama/kernels/pdl.py), torch's kernels between them without, must give the tokens of the
    # same step with every kernel launched serially. A kernel reading before its wait would read the
    # previous token's values.
    import dataclasses
    from llama.kernels import gemv, pdl
    args = dataclasses.replace(ARCHITECTURES["meta-llama/Llama-3.1-8B"], n_layers=2, vocab_size=8192)
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = Transformer(args).to(torch.bfloat16).eval()
    gemv.quantize_linears(model, scheme, 128)
    settings = generate.Settings(max_new_tokens=24, temperature=0)
    prompt = torch.randint(0, args.vocab_size, (1, 7), device="cuda")
    tokens = {}
    for name, kernels in (("serial", ()), ("pdl", pdl.ALL)):
        with pdl.only(kernels), torch.no_grad():
            model.setup_caches(1, 64, kv_cache="prefix")
            graphed = generate.GraphedDecode(model, 0, None, compiled=False)
            tokens[name] = generate.generate_once(model, prompt, settings, generate.eager_prefill, graphed.decode,
                                                  torch.cuda.synchronize)[0]
    assert torch.equal(tokens["pdl"], tokens["serial"]), tokens
