"""Shared fixtures: synthesized tiny checkpoints (seed 0), made once per test session."""
import os

import pytest
import torch

# Without a GPU, our Triton kernels are still checked, through Triton's CPU interpreter; the
# variable must be set before the first kernel is compiled.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

from llama.checkpoint import synthesize


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    """Llama-3-style tiny shape (GQA, llama3 RoPE scaling, tiktoken tokenizer)."""
    return synthesize("tiny", tmp_path_factory.mktemp("tiny"), seed=0)


@pytest.fixture(scope="session")
def tiny_llama2_checkpoint(tmp_path_factory):
    """Llama-2-style tiny shape (MHA, sentencepiece tokenizer)."""
    return synthesize("tiny-llama2", tmp_path_factory.mktemp("tiny-llama2"), seed=0)
