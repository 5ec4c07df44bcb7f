"""The issue-6 benchmark scripts on CPU: their smoke modes run end to end, and what they claim about
the kernels' sm_90 code holds (benchmarks/gemv_sass.py compiles for sm_90 without a GPU).

Numbers from these runs are not timings; the point is that the scripts the H200 calls run work.
"""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from llama.kernels import gemv

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

needs_triton = pytest.mark.skipif(gemv.triton is None, reason="needs triton")


def test_decode_roofline_smoke_both_bf16_paths(tmp_path):
    import decode_roofline
    decode_roofline.main(["--device", "cpu", "--model", "tiny", "--compile", "none", "--new-tokens", "8",
                          "--runs", "bf16:ours,int8wo:ours", "--repeats", "1", "--ours_bf16", "cublas",
                          "--out", str(tmp_path / "cublas")])
    decode_roofline.main(["--device", "cpu", "--model", "tiny", "--compile", "none", "--new-tokens", "8",
                          "--runs", "bf16:ours", "--repeats", "1", "--out", str(tmp_path / "gemv")])  # the default
    rows = [json.loads(line) for line in open(tmp_path / "cublas" / "decode_roofline.jsonl")]
    assert [(r["technique"], r["linears"]) for r in rows] == [("bf16", "nn.Linear"), ("int8wo", "gemv int8")]
    (gemv_row,) = [json.loads(line) for line in open(tmp_path / "gemv" / "decode_roofline.jsonl")]
    assert gemv_row["linears"] == "gemv none" and gemv_row["status"] == "ok"
    assert gemv_row["logits_rel_err"] < 1e-2 and gemv_row["tokens_repeat"]


def test_decode_roofline_path_variants(tmp_path):
    # ours+VARIANT paths: each variant changes only its setting, for that row only, and the row says
    # what it ran with; unknown or contradictory variants are usage errors.
    import decode_roofline as dr
    from llama.kernels import pdl
    assert dr.parse_path("ours") == ("ours", set())
    assert dr.parse_path("ours-pdl-gemv+prefetch+whole") == ("ours-pdl-gemv", {"prefetch", "whole"})
    assert dr.parse_path("ours+bfloat16=8.1024.4+whole") == ("ours", {"bfloat16=8.1024.4", "whole"})
    for bad in ("plain+whole", "ours+fast", "theirs", "ours+whole+blocks", "ours+norms+apart", "ours+tune+notune",
                "ours+bf16=8.512.2", "ours+bfloat16=8.512", "ours+int8=8.x.2", "plain+int8=8.512.2"):
        with pytest.raises(ValueError):
            dr.parse_path(bad)
        with pytest.raises(SystemExit):
            dr.main(["--device", "cpu", "--model", "tiny", "--runs", f"bf16:{bad}"])
    before, kernels = dict(gemv.GEMV_CONFIGS), set(pdl.KERNELS)
    with torch._inductor.config.patch(dr.INDUCTOR_CONFIG), dr.path_context("ours-pdl-gemv+prefetch+ipdl+notune"):
        assert all(gemv.gemv_config(kind, None).prefetch == 1 for kind in gemv.GEMV_CONFIGS)
        assert set(pdl.KERNELS) == set(pdl.GEMV_KINDS)
        assert gemv.gemv_config("int4", None).kernel == gemv.gemv_config("int4", before["int4"]).kernel
    assert gemv.GEMV_CONFIGS == before and set(pdl.KERNELS) == kernels
    # An entry given whole (missing fields as gemv_config reads them) wins over +prefetch's.
    from llama.kernels import decode_attention as da
    with dr.path_context("ours+kvpf+late"):
        assert da.KV_PREFETCH and da.RELEASE_LATE
    assert not da.KV_PREFETCH and not da.RELEASE_LATE
    with dr.path_context("ours+prefetch+bfloat16=8.1024.4+int4=16.256.4.1"):
        assert gemv.gemv_config("bfloat16") == (8, 1024, 4, 1, 0, 0)
        assert gemv.gemv_config("int4") == (16, 256, 4, 1, 0, 0)
        assert gemv.gemv_config("int8").prefetch == 1
    assert gemv.GEMV_CONFIGS == before
    dr.main(["--device", "cpu", "--model", "tiny", "--compile", "none", "--new-tokens", "4", "--repeats", "1",
             "--runs", "bf16:ours+prefetch+apart,int8wo:ours,bf16:plain,bf16:ours+bfloat16=8.64.2.1.2.0,"
             "int4wo-128:ours,int4wo-128:ours+notune,int8wo:ours+tune+ipdl,bf16:ours+noipdl", "--out", str(tmp_path)])
    rows = [json.loads(line) for line in open(tmp_path / "decode_roofline.jsonl")]
    assert [r["status"] for r in rows] == ["ok"] * 8
    # Inductor's timing-based tuning: off where our GEMVs do every matmul (gemv.inductor_settings),
    # except int4; its kernels on PDL where all the GEMVs are (bf16); the variants say otherwise for
    # their row.
    untuned, tuned, on_pdl = {"coordinate_descent_tuning": False}, {"coordinate_descent_tuning": True}, {"triton.enable_pdl": True}
    assert [r.get("inductor") for r in rows] == [untuned | on_pdl, untuned, None, untuned | on_pdl, {}, untuned,
                                                 tuned | on_pdl, untuned | {"triton.enable_pdl": False}]
    assert rows[0]["gemv_configs"]["bfloat16"][3] == 1 and rows[0]["forward"] == "none"
    assert rows[3]["gemv_configs"]["bfloat16"] == [8, 64, 2, 1, 2, 0]
    assert rows[0]["decode_step_flags"] == [] and "decode_step_flags" not in rows[2]
    assert rows[1]["gemv_configs"] == {k: list(v) for k, v in before.items()} and rows[1]["pdl_kernels"] == sorted(kernels)
    assert "gemv_configs" not in rows[2]


def test_bf16_ours_compiles_the_forward_whole(tmp_path, monkeypatch):
    # bf16's ours path (WHOLE_FORWARD) hands GraphedDecode whole_step=True, +blocks takes it back;
    # the quantized techniques keep their blocks apart unless +whole.
    import decode_roofline as dr
    seen = []

    class Recorder(dr.GraphedDecode):
        def __init__(self, model, temperature, top_k, compiled=True, whole_step=False):
            seen.append(whole_step)
            super().__init__(model, temperature, top_k, compiled=False)

    monkeypatch.setattr(dr, "GraphedDecode", Recorder)
    dr.main(["--device", "cpu", "--model", "tiny", "--new-tokens", "4", "--repeats", "1", "--out", str(tmp_path),
             "--runs", "bf16:ours,bf16:ours+blocks,int8wo:ours,int8wo:ours+whole"])
    assert seen == [True, False, False, True]
    rows = [json.loads(line) for line in open(tmp_path / "decode_roofline.jsonl")]
    assert [r["forward"] for r in rows] == ["whole", "blocks", "blocks", "whole"]


@needs_triton
def test_gemv_sweep_smoke_deploys_split_k(tmp_path, monkeypatch):
    # The deploy phase runs every candidate that can split both ways; the recommendation is a
    # GEMV_CONFIGS entry decode_roofline reads back.
    import gemv_sweep
    monkeypatch.setattr(gemv, "MIN_PROGRAMS", gemv.MIN_PROGRAMS)  # the smoke lowers it
    assert gemv_sweep.main(["--device", "cpu", "--smoke", "--kinds", "int8", "--out", str(tmp_path)]) == 0
    raw = (tmp_path / "gemv_sweep.txt").read_text()
    deployed = {line.split("cfg=")[1].split(" err")[0] for line in raw.splitlines() if line.startswith("deploy int8")}
    assert any(c.endswith(", 1)") and c.count(",") == 5 for c in deployed), deployed
    assert any(c.count(",") == 4 for c in deployed), deployed
    picked = json.loads((tmp_path / "gemv_configs.json").read_text())
    assert set(picked) == set(gemv.GEMV_CONFIGS) and len(picked["int8"]) in (5, 6)


@needs_triton
def test_sm90_instruction_counts():
    # What docs/performance.md says of the kernels' loops: int8 v2 spends about half the
    # instructions per weight byte of the rowwise kernel (split-K's alignment hints keep it so).
    # A subprocess: here the kernels are interpreted (conftest), and gemv_sass compiles them.
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gemv_sass.py"), "--int4", "16,512,1,0"], env=env,
                         cwd=ROOT, capture_output=True, text=True, check=True).stdout
    per_byte = {m[1]: float(m[2]) for m in re.finditer(r"^(.*?\))\s+\d+ instr in the loop,\s+([\d.]+) per weight byte",
                                                     out, re.MULTILINE)}
    assert per_byte["int8 v2 (8, 512, 2, 0)"] < 0.6 * per_byte["int8 v1 (8, 512, 2, 0)"], per_byte
    # 3.92 now; 4.36 when the split-K start hid the tiles' alignment (docs/performance.md)
    assert per_byte["int8 v2 (8, 512, 2, 0)"] < 4.1 and len(per_byte) == 22, per_byte
    assert "int4 v2 g128 (16, 512, 1, 0)" in per_byte and "int4 v2 g128 norm (16, 512, 1, 0)" in per_byte
    # int4 v2 at its entry (32, 512, 2, no prefetch): 5.37 (Triton 3.6, the H200's: 5.86) since a
    # thread's 4 words of a group go into one FMA chain per row; 5.72 (3.6: 8.34) before, and with the
    # prefetch 5.77 now, 6.15 before (docs/performance.md)
    c = gemv.gemv_config("int4")
    assert per_byte[f"int4 v2 g128 {(c.block_n, c.block_k, c.num_warps, c.prefetch)}"] < 5.55, per_byte
    # float8 on the word kernel: no more per byte than int8 there (3.66 against 3.92; Triton 3.6: 3.80
    # against 4.33), and under the rowwise kernel's float8 loop at the same launch shape (4.47; 3.6: 4.66)
    assert per_byte["float8 v2 (8, 512, 2, 0)"] <= per_byte["int8 v2 (8, 512, 2, 0)"], per_byte
    assert per_byte["float8 v2 (8, 512, 2, 0)"] < 0.9 * per_byte["float8 v1 (8, 512, 2, 0)"], per_byte
    # RMSNorm in the prologue (NORM) at the GEMV_CONFIGS entries: each x tile normalized as it is
    # loaded costs at most ~15% more per weight byte in the loop (Triton 3.9: int8 3.92 -> 4.44,
    # float8 3.66 -> 4.19, bf16 1.78 -> 2.04, int4 5.37 -> 5.63).
    pairs = {normed: normed.replace(" norm", "") for normed in per_byte if " norm " in normed}
    assert len(pairs) == 5 and sum(plain in per_byte for plain in pairs.values()) >= 1, per_byte
    for normed, plain in pairs.items():
        assert plain not in per_byte or per_byte[normed] < 1.2 * per_byte[plain], (normed, per_byte)


@pytest.mark.parametrize("text,message", [("[1, 2]", "not a JSON object"), ('{"int9": [8, 512, 2]}', "unknown weight kinds"),
                                          ('{"int8": [8, 512]}', "at least"), ("{", "not a JSON object")])
def test_gemv_configs_file_errors_are_usage_errors(tmp_path, capsys, text, message):
    # Both scripts that take --gemv_configs read it through gemv.apply_configs: a bad file is a usage
    # error (exit 2) that names the problem, and GEMV_CONFIGS is left as it was.
    import decode_roofline
    import profile_decode_step
    path = tmp_path / "configs.json"
    path.write_text(text)
    before = dict(gemv.GEMV_CONFIGS)
    for script, extra in ((decode_roofline, ["--device", "cpu", "--model", "tiny"]),
                          (profile_decode_step, ["--device", "cpu", "--model", "tiny"])):
        with pytest.raises(SystemExit) as e:
            script.main(extra + ["--gemv_configs", str(path)])
        assert e.value.code == 2 and message in capsys.readouterr().err
    assert gemv.GEMV_CONFIGS == before


def test_gemv_configs_file_applies(tmp_path, monkeypatch):
    # And turns off inductor's on-disk caches: the entries are not in their key (sixth H200 session).
    import torch._functorch.config
    import torch._inductor.config
    monkeypatch.setattr(gemv, "GEMV_CONFIGS", dict(gemv.GEMV_CONFIGS))
    path = tmp_path / "configs.json"
    path.write_text('{"int8": [4, 1024, 2, 0, 2, 1]}')
    # config.patch, not monkeypatch: monkeypatch's undo leaves a torch config entry hidden ("does not exist").
    before = (torch._inductor.config.fx_graph_cache, torch._functorch.config.enable_autograd_cache)
    with torch._inductor.config.patch(fx_graph_cache=True), torch._functorch.config.patch(enable_autograd_cache=True):
        assert gemv.apply_configs(str(path))["int8"] == (4, 1024, 2, 0, 2, 1) == gemv.GEMV_CONFIGS["int8"]
        assert not torch._inductor.config.fx_graph_cache and not torch._functorch.config.enable_autograd_cache
    assert (torch._inductor.config.fx_graph_cache, torch._functorch.config.enable_autograd_cache) == before


def test_kernel_timeline_cuts_a_step_into_spans():
    # Two replays of a 2-layer step (µs): norm, a GEMV launched early under PDL (starts 1 µs before the
    # norm ends), the decode step, a gap, the GEMV after it; the second replay the same, 100 µs later.
    import kernel_timeline as kt
    # Inductor's kernel names list what they fuse: a GEMV's output makes none of them a GEMV.
    step = [("triton_red_fused_add_rowwise_gemv_rsqrt_sum_0", 0.0, 3.0), ("_words_gemv_kernel", 2.0, 12.0),
            ("_decode_step_kernel", 12.0, 18.0), ("_words_gemv_kernel", 19.0, 30.0)]
    kernels = [(n, a + t, b + t) for t in (0.0, 100.0) for n, a, b in step]
    s = kt.summarize(kernels[::-1], steps=2, layers=2)  # any order in
    assert s["kernels_per_step"] == 4
    assert s["step_us"] == 30.0  # each replay's first start to last end: the 70 µs between left out
    assert (s["gemv_us"], s["overlap_us"], s["attention_us"], s["other_us"]) == (20.0, 1.0, 6.0, 2.0)
    assert s["idle_us"] == 1.0 and s["idle_us_per_layer"] == 0.5
    assert sum(s[f"{span}_us"] for span in kt.SPANS) == s["step_us"]
    lines = kt.sequence(kernels, 1, 3).splitlines()
    assert lines[1].split() == ["0.00", "10.00", "+0.00", "_words_gemv_kernel"]
    assert lines[3].split() == ["17.00", "11.00", "+1.00", "_words_gemv_kernel"]
    for bad, steps in (([], 1), (kernels[:7], 2)):
        with pytest.raises(ValueError):
            kt.summarize(bad, steps, 1)


def test_profile_smoke_compiles_the_forward_whole(capsys, monkeypatch):
    # --forward whole profiles the step as bf16's ours decodes it (compile_step(whole=True)): one
    # compiled graph for the forward, the blocks left uncompiled; on CPU, torch ops stand for kernels.
    import profile_decode_step
    models = []

    def compile_step(model, whole=False):
        models.append(model)
        return generate_compile_step(model, whole)

    generate_compile_step = profile_decode_step.compile_step
    monkeypatch.setattr(profile_decode_step, "compile_step", compile_step)
    profile_decode_step.main(["--device", "cpu", "--model", "tiny", "--layers", "2", "--scheme", "none",
                              "--kv_caches", "model", "--positions", "8", "--cache_size", "16", "--steps", "1",
                              "--forward", "whole"])
    out = capsys.readouterr().out
    assert "pos 8 eager:" in out and "pos 8 compiled (whole):" in out
    (model,) = models
    assert model._compiled_call_impl is not None and not any(layer._compiled_call_impl for layer in model.layers)


def test_profile_splits_gemv_time_by_linear():
    # A step launches one GEMV per linear in order (per layer wqkv, wo, w13, w2; then the output), with
    # other kernels between them: per_linear tells them apart by place, and divides each linear's
    # weight bytes (all layers) by its time per step. Fake profiler events, 2 steps of a 2-layer model.
    import dataclasses
    from types import SimpleNamespace

    import profile_decode_step as pds
    import torch

    from llama.model import ARCHITECTURES, Transformer
    model = Transformer(dataclasses.replace(ARCHITECTURES["tiny"], n_layers=2))
    gemv.quantize_linears(model, "int8")
    cuda = torch.autograd.DeviceType.CUDA
    us = {"attention.wqkv": 1.0, "attention.wo": 2.0, "feed_forward.w13": 4.0, "feed_forward.w2": 8.0, "output": 16.0}
    order = [n for _ in range(2) for n in pds.LINEARS] + ["output"]
    events, t = [], 0
    for _ in range(2):
        for name in order:
            events.append(SimpleNamespace(device_type=cuda, name="_words_gemv_kernel", time_range=SimpleNamespace(start=t),
                                          device_time_total=us[name]))
            events.append(SimpleNamespace(device_type=cuda, name="triton_poi_fused_add", time_range=SimpleNamespace(start=t + 1),
                                          device_time_total=100.0))
            t += 2
    events.reverse()  # the profiler's order is not launch order
    text = pds.per_linear(SimpleNamespace(events=lambda: events), model, steps=2)
    ms = {line.split()[2]: float(line.split()[0]) for line in text.splitlines()[1:]}
    assert ms == {"attention.wqkv": 0.002, "attention.wo": 0.004, "feed_forward.w13": 0.008, "feed_forward.w2": 0.016,
                  "output": 0.016}
    wo = model.layers[0].attention.wo
    gb_s = 2 * (wo.qweight.numel() + 4 * wo.scale.numel()) / 4e-6 / 1e9  # 2 layers in 4 us per step
    assert f"attention.wo {gb_s:9.0f} GB/s".split() == text.splitlines()[2].split()[2:]
    one_missing = events[:1] + events[2:]  # events[1] is the last GEMV launched
    assert "not split" in pds.per_linear(SimpleNamespace(events=lambda: one_missing), model, steps=2)
