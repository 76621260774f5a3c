"""Texts to fixed-length token tensors: a tokenizer (prunecli's bytes or a local Hugging Face one), packing for
language modelling, padding with an attention mask otherwise.

    encoder = load_encoder(None)                   # ByteTokenizer: ids 0-255, no download
    encoder = load_encoder("path/to/model_dir")    # AutoTokenizer.from_pretrained(..., local_files_only=True)
    ids = pack(encoder.encode_all(texts), encoder.eos_id, 128)                  # [N, 128], no padding
    ids, mask = pad(encoder.encode_all(texts, special=True), encoder.pad_id, 128)  # [N, 128] each
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import torch
from torch.utils.data import Dataset

from prunecli.data.stdlib_text import ByteTokenizer
from prunecli.errors import ConfigError

# The byte tokenizer has no end-of-text id: texts are separated by a newline byte.
BYTE_SEPARATOR = ord("\n")
# Files of which a saved Hugging Face tokenizer has at least one.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "vocab.json", "tokenizer.model")
INSTALL_HF = "pip install prunecli[hf]"


@dataclass(frozen=True)
class Encoder:
    """A tokenizer seen as what the datasets need: ids of texts, the id range, the separator and the pad id.

    Attributes:
        tokenizer: A :class:`ByteTokenizer` or a Hugging Face tokenizer.
        vocab_size: Ids are ``0 .. vocab_size - 1`` (``len(tokenizer)`` of a Hugging Face tokenizer).
        eos_id: The id that ends a text when texts are packed (the byte tokenizer: a newline).
        pad_id: The id of padding positions (masked out; the tokenizer's pad, else its EOS, else 0).
    """

    tokenizer: Any
    vocab_size: int
    eos_id: int
    pad_id: int

    def encode_all(self, texts: Sequence[str], special: bool = False) -> list[list[int]]:
        """Token ids of each text; ``special``: with the tokenizer's own special tokens (``[CLS] ... [SEP]``)."""
        if isinstance(self.tokenizer, ByteTokenizer):
            return [self.tokenizer.encode(text) for text in texts]
        return self.tokenizer(list(texts), add_special_tokens=special)["input_ids"]


def load_encoder(path: Optional[str], key: str = "dataset.tokenizer") -> Encoder:
    """The byte tokenizer for ``path`` None, else the Hugging Face tokenizer saved in the local folder ``path``.

    Never downloads: ``local_files_only=True`` and ``HF_HUB_OFFLINE``; ``trust_remote_code`` stays off.

    Raises:
        ConfigError: ``path`` is not a folder holding a tokenizer, or ``transformers`` is not installed.
    """
    if path is None:
        return Encoder(ByteTokenizer(), ByteTokenizer.vocab_size, BYTE_SEPARATOR, 0)
    allowed = "a local Hugging Face tokenizer folder (tokenizer.json or tokenizer_config.json) or null (bytes)"
    folder = Path(str(path)).expanduser()
    if not folder.is_dir():
        raise ConfigError(key, path, allowed, reason="no such folder")
    if not any((folder / name).is_file() for name in TOKENIZER_FILES):
        raise ConfigError(key, path, allowed, reason=f"it holds none of {', '.join(TOKENIZER_FILES)}")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a file that is not there is an error, never a download
    try:
        from transformers import AutoTokenizer
    except ImportError:
        raise ConfigError(key, path, allowed, reason=f"needs transformers: {INSTALL_HF}") from None
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    except Exception as err:  # transformers raises OSError, ValueError, KeyError... for a folder it cannot read
        line = next((s.strip() for s in str(err).splitlines() if s.strip()), type(err).__name__)
        raise ConfigError(key, path, allowed, reason=line[:200]) from None
    eos = tokenizer.eos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    if eos is None:
        eos = tokenizer.sep_token_id if tokenizer.sep_token_id is not None else 0
    return Encoder(tokenizer, len(tokenizer), int(eos), int(pad if pad is not None else 0))


def pack(token_lists: Sequence[Sequence[int]], eos_id: int, length: int) -> torch.Tensor:
    """The texts' ids, each followed by ``eos_id``, concatenated and cut into ``[N, length]`` blocks (the
    remainder shorter than a block is dropped)."""
    flat = [i for ids in token_lists for i in (*ids, eos_id)]
    count = len(flat) // length
    return torch.tensor(flat[: count * length], dtype=torch.long).view(count, length)


def pad(token_lists: Sequence[Sequence[int]], pad_id: int, length: int,
        end_id: Optional[int] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(input_ids, attention_mask)``, each ``[N, length]``: every text's ids (followed by ``end_id`` when
    given) cut to ``length`` and right-padded with ``pad_id``; the mask is 1 on real tokens, 0 on padding."""
    ids = torch.full((len(token_lists), length), pad_id, dtype=torch.long)
    mask = torch.zeros((len(token_lists), length), dtype=torch.long)
    for row, tokens in enumerate(token_lists):
        tokens = list(tokens) + ([end_id] if end_id is not None else [])
        tokens = tokens[:length]
        ids[row, : len(tokens)] = torch.tensor(tokens, dtype=torch.long)
        mask[row, : len(tokens)] = 1
    return ids, mask


class TextTensors(Dataset):
    """Samples of equal-length tensors held in memory: sample ``i`` is ``{name: tensor[i]}`` (``input_ids``, and
    ``attention_mask`` / ``labels`` where the data has them)."""

    def __init__(self, **tensors: torch.Tensor):
        lengths = {t.shape[0] for t in tensors.values()}
        if "input_ids" not in tensors or len(lengths) != 1:
            raise ValueError(f"expected input_ids and tensors of one length, got {sorted(tensors)} of {lengths}")
        self.tensors = {name: t.long().contiguous() for name, t in tensors.items()}

    def __len__(self) -> int:
        return self.tensors["input_ids"].shape[0]

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {name: t[index] for name, t in self.tensors.items()}
