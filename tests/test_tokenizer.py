import pytest

from llama.tokenizer import (LLAMA3_SPECIAL_TOKENS, SentencePieceTokenizer, TiktokenTokenizer, TokenizerError,
                             detect_kind, load_tokenizer, synthesize_tokenizer)

TEXTS = ["Hello, world!", "  two  spaces\nand a newline\n\n", "numbers 1234567 and 3.14", "ünïcödé → 漢字 🙂",
         "it's we'll they'd", ""]


def _synthetic(kind, tmp_path_factory):
    path = tmp_path_factory.mktemp(kind) / "tokenizer.model"
    path.write_bytes(synthesize_tokenizer(kind, 512, seed=3))
    return load_tokenizer(path)


@pytest.fixture(scope="module")
def sp_tokenizer(tmp_path_factory):
    return _synthetic("sentencepiece", tmp_path_factory)


@pytest.fixture(scope="module")
def tiktoken_tokenizer(tmp_path_factory):
    return _synthetic("tiktoken", tmp_path_factory)


@pytest.fixture(params=["sp_tokenizer", "tiktoken_tokenizer"])
def tokenizer(request):
    return request.getfixturevalue(request.param)


def test_round_trip(tokenizer):
    for text in TEXTS:
        ids = tokenizer.encode(text, bos=False)
        assert tokenizer.decode(ids) == text
        assert all(0 <= i < tokenizer.vocab_size for i in ids)
        assert tokenizer.encode(text) == [tokenizer.bos_id] + ids


def test_bpe_actually_merges(tokenizer):
    # A trained BPE, not a byte-level identity: common text takes fewer tokens than bytes.
    text = "the cat sat on the mat " * 4 + "Bakuto ranso"
    assert len(tokenizer.encode(text, bos=False)) < len(text.encode()) / 1.5


def test_detect_kind(tokenizer):
    assert detect_kind(tokenizer.path) == tokenizer.kind
    assert type(load_tokenizer(tokenizer.path)) is type(tokenizer)


def test_sentencepiece_has_llama2_ids(sp_tokenizer):
    tokenizer = sp_tokenizer
    assert (tokenizer.sp.unk_id(), tokenizer.bos_id, tokenizer.eos_id, tokenizer.vocab_size) == (0, 1, 2, 512)
    assert tokenizer.sp.id_to_piece(3) == "<0x00>" and tokenizer.sp.id_to_piece(258) == "<0xFF>"  # byte fallback


def test_tiktoken_special_tokens(tiktoken_tokenizer):
    tokenizer = tiktoken_tokenizer
    n_ranks = tokenizer.encoding.n_vocab - len(tokenizer.special_tokens)
    assert (n_ranks, len(tokenizer.special_tokens), tokenizer.vocab_size) == (496, 16, 512)
    assert tokenizer.bos_id == n_ranks and tokenizer.eos_id == n_ranks + 1 and tokenizer.eot_id == n_ranks + 9
    chat = "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
    ids = tokenizer.encode(chat, bos=True)
    assert ids[:2] == [tokenizer.bos_id, tokenizer.special_tokens["<|start_header_id|>"]]
    assert ids[-1] == tokenizer.eot_id
    assert tokenizer.decode(ids) == "<|begin_of_text|>" + chat
    # Plain-text encoding of a special token's string, when asked for, is not the special id.
    assert tokenizer.eot_id not in tokenizer.encode("<|eot_id|>", bos=False, allowed_special=set())


def test_llama3_sized_tiktoken(tmp_path):
    path = tmp_path / "tokenizer.model"
    path.write_bytes(synthesize_tokenizer("tiktoken", 128256, seed=0))
    tok = TiktokenTokenizer(path)
    assert tok.vocab_size == 128256 and len(tok.special_tokens) == 256
    assert [tok.special_tokens[n] for n in ("<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>",
                                            "<|end_header_id|>", "<|eot_id|>")] == [128000, 128001, 128006, 128007, 128009]
    assert tok.special_tokens["<|reserved_special_token_250|>"] == 128255
    assert list(tok.special_tokens) == LLAMA3_SPECIAL_TOKENS


def test_wrong_kind_and_corrupt_files(tmp_path, tokenizer):
    other = "tiktoken" if tokenizer.kind == "sentencepiece" else "sentencepiece"
    with pytest.raises(TokenizerError, match=str(tokenizer.path)):
        load_tokenizer(tokenizer.path, kind=other)
    garbage = tmp_path / "garbage.model"
    garbage.write_bytes(b"\x00\x01not a tokenizer\xff" * 10)
    with pytest.raises(TokenizerError, match="garbage.model"):
        load_tokenizer(garbage)
    truncated = tmp_path / "truncated.model"
    data = tokenizer.path.read_bytes()
    cut = data.index(b"\n", len(data) // 2) + 3  # mid-line (a cut at a line end is caught by checkpoint.load)
    truncated.write_bytes(data[:cut])
    with pytest.raises(TokenizerError, match="truncated.model"):
        load_tokenizer(truncated, kind=tokenizer.kind)
    with pytest.raises(TokenizerError, match="missing.model"):
        load_tokenizer(tmp_path / "missing.model")


def test_unknown_kind(tokenizer):
    with pytest.raises(TokenizerError, match="unknown tokenizer kind"):
        load_tokenizer(tokenizer.path, kind="bpe")
    with pytest.raises(ValueError, match="multiple of 256"):
        synthesize_tokenizer("tiktoken", 1000)


def test_synthesis_is_seeded():
    assert synthesize_tokenizer("tiktoken", 512, seed=5) == synthesize_tokenizer("tiktoken", 512, seed=5)
    assert synthesize_tokenizer("tiktoken", 512, seed=5) != synthesize_tokenizer("tiktoken", 512, seed=6)
    assert synthesize_tokenizer("sentencepiece", 512, seed=5) == synthesize_tokenizer("sentencepiece", 512, seed=5)


def test_sentencepiece_class_direct(tmp_path):
    path = tmp_path / "sp.model"
    path.write_bytes(synthesize_tokenizer("sentencepiece", 32000, seed=0))
    assert SentencePieceTokenizer(path).vocab_size == 32000
