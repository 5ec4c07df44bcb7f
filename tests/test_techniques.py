"""The technique registry: every technique that runs on CPU, its error and size; specs; errors."""
import copy
import dataclasses

import pytest
import torch

from llama import techniques
from llama.model import ARCHITECTURES, Int8KVCache, KVCache, Transformer

DTYPE = torch.bfloat16

# Relative L2 error of the logits against the unquantized bf16 model, and model size as a fraction of
# bf16, on the seeded tiny model. Measured (torchao 0.18, torch 2.13 CPU): int8wo 0.0079 / 0.544,
# int8dq 0.0124 / 0.544, float8wo 0.031 / 0.542, int4wo-32/64/128 0.071/0.074/0.077 and
# 0.362/0.333/0.319, int4wo-hqq-32 0.069 / 0.362, int8wo-triton 0.0081 / 0.542, float8wo-triton
# 0.030 / 0.542, int4wo-triton-64 0.075 / 0.333. Bounds have ~1.5x margin on error; sizes are exact
# arithmetic (the tiny model keeps its bf16 embedding table, hence ~0.54 and not 0.5).
# Every registry entry that runs on CPU needs a row here (test_every_cpu_technique_is_tested).
WEIGHT_BOUNDS = {
    "int8wo": (0.012, 0.55),
    "int8dq": (0.02, 0.55),
    "float8wo": (0.047, 0.55),
    "int4wo-32": (0.11, 0.37),
    "int4wo-64": (0.11, 0.34),
    "int4wo-128": (0.115, 0.325),
    "int4wo-hqq-32": (0.105, 0.37),
    "int8wo-triton": (0.012, 0.55),
    "float8wo-triton": (0.047, 0.55),
    "int4wo-triton-64": (0.11, 0.34),
}


@pytest.fixture(scope="module")
def base():
    torch.manual_seed(0)
    return Transformer(ARCHITECTURES["tiny"]).to(DTYPE).eval()


@pytest.fixture(scope="module")
def tokens():
    return torch.randint(0, ARCHITECTURES["tiny"].vocab_size, (2, 16), generator=torch.Generator().manual_seed(1))


def rel_error(y, ref):
    return ((y.float() - ref.float()).norm() / ref.float().norm()).item()


@pytest.mark.parametrize("spec", list(WEIGHT_BOUNDS))
def test_weight_technique_error_and_size(base, tokens, spec):
    max_error, max_size = WEIGHT_BOUNDS[spec]
    model = copy.deepcopy(base)
    options = techniques.apply(model, spec, "cpu", DTYPE)
    assert options == techniques.RunOptions()
    with torch.no_grad():
        error = rel_error(model(tokens), base(tokens))
    size = techniques.model_size_bytes(model) / techniques.model_size_bytes(base)
    assert 0 < error < max_error, f"{spec}: logits error {error:.4f}"
    assert size < max_size, f"{spec}: size {size:.3f} of bf16"
    # the output projection is quantized too (untied model)
    output_bytes = sum(map(techniques.storage_bytes, [*model.output.parameters(), *model.output.buffers()]))
    assert output_bytes < 0.6 * base.output.weight.numel() * 2


def test_every_cpu_technique_is_tested():
    cpu_runnable = [t for t in techniques.TECHNIQUES if t.kind == "weight" and t.name != "none"
                    and any(t.check(torch.device("cpu"), DTYPE, p) is None for p in t.params or [None])]
    untested = [t.name for t in cpu_runnable if not set(t.names()) & set(WEIGHT_BOUNDS)]
    assert not untested, f"add measured error/size bounds to WEIGHT_BOUNDS for {untested}"


def test_none_changes_nothing(base, tokens):
    model = copy.deepcopy(base)
    assert techniques.apply(model, "none", "cpu", DTYPE) == techniques.RunOptions(KVCache, "quadratic")
    assert techniques.model_size_bytes(model) == sum(p.numel() * 2 for p in base.parameters())
    with torch.no_grad():
        assert torch.equal(model(tokens), base(tokens))


def cached_logits(model, options, tokens, prompt_len=12):
    """Prefill `prompt_len` tokens through the KV cache, then decode the rest one at a time."""
    model.setup_caches(tokens.shape[0], 64, kv_cache=options.kv_cache, mask=options.mask)
    with torch.no_grad():
        steps = [model(tokens[:, :prompt_len], torch.arange(prompt_len))]
        steps += [model(tokens[:, i:i + 1].contiguous(), torch.tensor([i])) for i in range(prompt_len, tokens.shape[1])]
    return torch.cat(steps, dim=1)


def test_kv_and_mask_techniques(base, tokens):
    ref = cached_logits(copy.deepcopy(base), techniques.RunOptions(), tokens)
    # linear mask: same attention, built per step -> identical logits
    options = techniques.apply(copy.deepcopy(base), "linear-mask", "cpu", DTYPE)
    assert options == techniques.RunOptions(KVCache, "linear")
    assert torch.equal(cached_logits(copy.deepcopy(base), options, tokens), ref)
    # int8 KV: measured 0.0062
    options = techniques.apply(copy.deepcopy(base), "kv-int8", "cpu", DTYPE)
    assert options.kv_cache is Int8KVCache
    assert 0 < rel_error(cached_logits(copy.deepcopy(base), options, tokens), ref) < 0.01


def test_composition(base, tokens):
    model = copy.deepcopy(base)
    options = techniques.apply(model, "int4wo-64+kv-int8+linear-mask", "cpu", DTYPE)
    assert options == techniques.RunOptions(Int8KVCache, "linear")
    assert "Int4" in type(model.layers[0].attention.wqkv.weight).__name__
    ref = cached_logits(copy.deepcopy(base), techniques.RunOptions(), tokens)
    assert rel_error(cached_logits(model, options, tokens), ref) < 0.12
    # order doesn't matter
    assert techniques.apply(copy.deepcopy(base), "linear-mask+kv-int8", "cpu", DTYPE) == options


def test_tied_embeddings_stay_one_tensor():
    torch.manual_seed(0)
    model = Transformer(dataclasses.replace(ARCHITECTURES["tiny"], tie_embeddings=True)).to(DTYPE)
    bf16_size = techniques.model_size_bytes(model)
    techniques.apply(model, "int8wo", "cpu", DTYPE)
    assert model.output.weight is model.tok_embeddings.weight  # not silently untied into two copies
    assert type(model.layers[0].feed_forward.w2.weight) is not torch.nn.Parameter
    table = model.tok_embeddings.weight
    linear = sum(p.numel() for n, p in model.named_parameters() if n.endswith(("wqkv.weight", "wo.weight", "w13.weight", "w2.weight")))
    # one bf16 table + int8 linears (+ their scales) + norms
    assert table.numel() * 2 + linear < techniques.model_size_bytes(model) < 0.6 * bf16_size


def test_storage_bytes_counts_inner_tensors(base):
    model = copy.deepcopy(base)
    techniques.apply(model, "int8wo", "cpu", DTYPE)
    weight = model.layers[0].attention.wqkv.weight
    rows, cols = weight.shape
    assert techniques.storage_bytes(weight) >= rows * cols + rows * 2  # int8 data + a bf16 scale per row
    assert techniques.storage_bytes(weight) < rows * cols * 2


def test_unknown_technique_lists_known_names():
    with pytest.raises(techniques.UnknownTechnique, match="known: none, int8wo") as e:
        techniques.parse("int3wo")
    assert "int4wo-64" in str(e.value) and "kv-int8" in str(e.value)
    assert isinstance(e.value, ValueError)
    with pytest.raises(techniques.UnknownTechnique, match="group size must be one of 32, 64, 128, 256"):
        techniques.parse("int4wo-48")
    with pytest.raises(techniques.UnknownTechnique, match="at most one"):
        techniques.parse("int8wo+int4wo-64")
    with pytest.raises(techniques.UnknownTechnique, match="empty"):
        techniques.parse("int8wo+")


def test_unsupported_on_this_device(base):
    for spec in ("float8dq-row", "float8dq-tensor", "int4wo-256+kv-int8"):
        with pytest.raises(techniques.Unsupported, match="float8 dynamic|group sizes 32/64/128"):
            techniques.apply(copy.deepcopy(base), spec, "cpu", DTYPE)
    # CUDA int4 kernels are bf16-only; the check needs no GPU to say so
    with pytest.raises(techniques.Unsupported, match="need bfloat16"):
        techniques.check("int4wo-64", "cuda", torch.float16)
    with pytest.raises(techniques.Unsupported, match="cpu or cuda"):
        techniques.check("int8wo", "mps", DTYPE)


def test_table_lists_every_entry():
    table = techniques.table()
    for t in techniques.TECHNIQUES:
        assert t.name in table and t.doc in table
