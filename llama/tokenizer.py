"""Tokenizers: sentencepiece (Llama 2) and tiktoken (Llama 3) behind one interface.

    tok = load_tokenizer("ckpt/tokenizer.model")     # kind detected from the file
    ids = tok.encode("Hello", bos=True); tok.decode(ids); tok.bos_id, tok.eos_id, tok.vocab_size

`synthesize_tokenizer` makes the tokenizer.model of a synthetic checkpoint, of an exact vocabulary
size: a BPE trained by sentencepiece (about 1 s even for 128k tokens) on seeded, procedurally
generated text, so it is a real, valid BPE, in Llama 2's or Llama 3's file format.
"""
from __future__ import annotations

import base64
import io
import itertools
import os
import random
from pathlib import Path
from typing import Iterable, Protocol

import sentencepiece as spm
import tiktoken

KINDS = ("sentencepiece", "tiktoken")

# Llama 3's pre-tokenizer pattern and special tokens (meta-llama/llama3, llama/tokenizer.py).
LLAMA3_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                  r"|\s*[\r\n]+|\s+(?!\S)|\s+")
LLAMA3_NUM_SPECIAL = 256
LLAMA3_SPECIAL_TOKENS = [
    "<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>", "<|reserved_special_token_1|>",
    "<|reserved_special_token_2|>", "<|reserved_special_token_3|>", "<|start_header_id|>", "<|end_header_id|>",
    "<|reserved_special_token_4|>", "<|eot_id|>",
] + [f"<|reserved_special_token_{i}|>" for i in range(5, LLAMA3_NUM_SPECIAL - 5)]


class TokenizerError(ValueError):
    """A tokenizer file that is missing, unreadable or of the wrong kind (one line, names the file)."""


class Tokenizer(Protocol):
    bos_id: int
    eos_id: int
    vocab_size: int

    def encode(self, text: str, bos: bool = True) -> list[int]: ...

    def decode(self, ids: Iterable[int]) -> str: ...


class SentencePieceTokenizer:
    kind = "sentencepiece"

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        try:
            self.sp = spm.SentencePieceProcessor(model_file=str(self.path))
        except (OSError, RuntimeError) as e:
            raise TokenizerError(f"{self.path}: not a readable sentencepiece model ({_first_line(e)})") from None
        self.bos_id, self.eos_id, self.vocab_size = self.sp.bos_id(), self.sp.eos_id(), self.sp.vocab_size()

    def encode(self, text: str, bos: bool = True) -> list[int]:
        return ([self.bos_id] if bos else []) + self.sp.encode(text)

    def decode(self, ids: Iterable[int]) -> str:
        return self.sp.decode(list(ids))


class TiktokenTokenizer:
    """Llama 3's tokenizer: BPE ranks from a `base64(token) rank` file, then the special tokens.

    Llama 3 has 128000 ranks and 256 specials (128256 ids). The number of specials is whatever
    fills the ranks up to the next multiple of 256, which gives 256 for Llama 3 and lets a
    small synthetic vocabulary (e.g. 1008 ranks + 16 specials) keep Llama 3's first names.
    """
    kind = "tiktoken"

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        # Parsed here rather than with tiktoken.load_tiktoken_bpe, which caches by path
        # (a rewritten file at the same path would return stale ranks).
        ranks = read_tiktoken_ranks(self.path)
        num_special = LLAMA3_NUM_SPECIAL - len(ranks) % LLAMA3_NUM_SPECIAL
        if num_special < 10:
            raise TokenizerError(f"{self.path}: {len(ranks)} ranks leave room for only {num_special} special tokens;"
                                 f" Llama 3 needs at least 10 (through <|eot_id|>)")
        self.special_tokens = {name: len(ranks) + i for i, name in enumerate(LLAMA3_SPECIAL_TOKENS[:num_special])}
        self.encoding = tiktoken.Encoding(name=self.path.name, pat_str=LLAMA3_PATTERN, mergeable_ranks=ranks,
                                          special_tokens=self.special_tokens)
        self.bos_id = self.special_tokens["<|begin_of_text|>"]
        self.eos_id = self.special_tokens["<|end_of_text|>"]
        self.eot_id = self.special_tokens["<|eot_id|>"]
        self.vocab_size = len(ranks) + num_special

    def encode(self, text: str, bos: bool = True, allowed_special="all") -> list[int]:
        # Special-token text (chat headers) becomes the special id, as in HF's Llama 3 tokenizer.
        ids = self.encoding.encode(text, allowed_special=allowed_special, disallowed_special=())
        return ([self.bos_id] if bos else []) + ids

    def decode(self, ids: Iterable[int]) -> str:
        return self.encoding.decode(list(ids))


def read_tiktoken_ranks(path: Path) -> dict[bytes, int]:
    try:
        lines = path.read_bytes().splitlines()
        ranks = {base64.b64decode(token, validate=True): int(rank) for token, rank in (l.split() for l in lines if l)}
    except OSError as e:
        raise TokenizerError(f"{path}: cannot read tiktoken ranks ({e.strerror})") from None
    except ValueError:
        raise TokenizerError(f"{path}: not a tiktoken ranks file (want `base64(token) rank` per line)") from None
    if sorted(ranks.values()) != list(range(len(ranks))) or len(ranks) < 256:
        raise TokenizerError(f"{path}: tiktoken ranks must be 0..N-1 with every byte; the file is corrupt or truncated")
    return ranks


def detect_kind(path: str | os.PathLike) -> str:
    """tiktoken files are text lines `base64 rank`; sentencepiece models are binary protobufs."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            head = f.read(256)
    except OSError as e:
        raise TokenizerError(f"{path}: cannot read tokenizer ({e.strerror})") from None
    first = head.split(b"\n", 1)[0].split(b" ")
    if len(first) == 2 and first[1].strip().isdigit():
        try:
            base64.b64decode(first[0], validate=True)
            return "tiktoken"
        except ValueError:
            pass
    return "sentencepiece"


def load_tokenizer(path: str | os.PathLike, kind: str | None = None) -> SentencePieceTokenizer | TiktokenTokenizer:
    kind = kind or detect_kind(path)
    if kind not in KINDS:
        raise TokenizerError(f"unknown tokenizer kind {kind!r}; use one of {KINDS}")
    return SentencePieceTokenizer(path) if kind == "sentencepiece" else TiktokenTokenizer(path)


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [e.__class__.__name__])[0]


# ----------------------------------------------------------------------------- synthetic tokenizers

def synthetic_text(seed: int, n_words: int) -> list[str]:
    """Seeded pseudo-language: a Zipf-distributed lexicon of syllable words, with punctuation
    and numbers, rich enough for BPE to learn `n_words`-ish distinct merges."""
    rng = random.Random(seed)
    syllables = [c + v + e for c in "bcdfghjklmnprstvwz" for v in "aeiou" for e in ("", "n", "r", "s", "t")]
    lexicon = sorted({"".join(rng.choices(syllables, k=rng.randint(1, 4))) for _ in range(n_words)})
    rng.shuffle(lexicon)
    cum_weights = list(itertools.accumulate(1.0 / (i + 1) for i in range(len(lexicon))))
    lines = []
    for _ in range(n_words // 2):
        words = rng.choices(lexicon, cum_weights=cum_weights, k=rng.randint(4, 20))
        words[0] = words[0].capitalize()
        end = rng.choice([".", ".", "?", "!", f", {rng.randint(0, 9999)}."])
        lines.append(" ".join(words) + end)
    return lines


def _train_bpe(seed: int, vocab_size: int, byte_fallback: bool) -> spm.SentencePieceProcessor:
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(synthetic_text(seed, n_words=max(4000, 2 * vocab_size))), model_writer=model,
        vocab_size=vocab_size, model_type="bpe", byte_fallback=byte_fallback, character_coverage=1.0,
        split_digits=True, normalization_rule_name="identity", remove_extra_whitespaces=False,
        add_dummy_prefix=True, unk_id=0, bos_id=1, eos_id=2, pad_id=-1,  # Llama 2's ids
        num_threads=os.cpu_count() or 1, minloglevel=2)
    return spm.SentencePieceProcessor(model_proto=model.getvalue())


def synthesize_tokenizer(kind: str, vocab_size: int, seed: int = 0) -> bytes:
    """The tokenizer.model file contents of a tokenizer with exactly `vocab_size` ids.

    sentencepiece: Llama 2's layout (<unk>, <s>, </s>, 256 byte pieces, then BPE pieces).
    tiktoken: the 256 bytes, then BPE merges in training order (each a concatenation of two
    lower ranks, so the ranks form a valid BPE), then Llama 3's special tokens.
    """
    if kind == "sentencepiece":
        return _train_bpe(seed, vocab_size, byte_fallback=True).serialized_model_proto()
    elif kind == "tiktoken":
        if vocab_size % LLAMA3_NUM_SPECIAL or vocab_size < 2 * LLAMA3_NUM_SPECIAL:
            raise ValueError(f"a tiktoken vocab_size must be a multiple of 256 and >= 512, not {vocab_size}")
        n_ranks = vocab_size - (LLAMA3_NUM_SPECIAL if vocab_size > 4096 else 16)
        n_merges = n_ranks - 256
        # The ASCII corpus has < 100 distinct characters; ask for enough pieces to cover them too.
        sp = _train_bpe(seed, n_merges + 3 + 100, byte_fallback=False)
        merges = []
        for i in range(sp.vocab_size()):
            token = sp.id_to_piece(i).replace("\u2581", " ").encode()
            if not sp.is_control(i) and not sp.is_unknown(i) and len(token) > 1:
                merges.append(token)
        if len(merges) < n_merges:
            raise RuntimeError(f"synthetic BPE learned only {len(merges)} merges, {n_merges} needed")
        ranks = [bytes([b]) for b in range(256)] + merges[:n_merges]
        return b"".join(base64.b64encode(t) + b" %d\n" % r for r, t in enumerate(ranks))
    raise ValueError(f"unknown tokenizer kind {kind!r}; use one of {KINDS}")

