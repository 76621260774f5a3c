"""Language modelling on the Python standard library's own source: a text dataset that needs no download.

The text is the top-level ``*.py`` files of ``sysconfig.get_paths()["stdlib"]`` (the same files on every machine
with the same Python), read as bytes: the tokenizer is the identity on bytes (:class:`ByteTokenizer`, 256 ids).
A file goes to validation when ``crc32(file name) / 2**32 < val_fraction``, so the split depends on the name
alone (not on the seed, the machine or the set of other files) and train and validation never share a file.
"""

from __future__ import annotations

import sysconfig
import zlib
from pathlib import Path
from typing import Sequence

import torch
from torch.utils.data import Dataset

from prunecli._checks import integer
from prunecli.data._registry import register_dataset
from prunecli.data.bundle import DataBundle
from prunecli.errors import ConfigError

VOCAB_SIZE = 256
MAX_SEQ_LEN = 65_536


class ByteTokenizer:
    """Text as its UTF-8 bytes: token ids 0-255, nothing to download, every string encodes."""

    vocab_size = VOCAB_SIZE

    def encode(self, text: str) -> list[int]:
        """The UTF-8 bytes of ``text`` as token ids."""
        return list(text.encode("utf-8"))

    def decode(self, ids: Sequence[int]) -> str:
        """The text of token ids (bytes that are not valid UTF-8 become U+FFFD)."""
        return bytes(int(i) for i in ids).decode("utf-8", errors="replace")


class TokenSequences(Dataset):
    """Fixed-length token sequences ``(N, seq_len)`` in memory; a sample is ``{"input_ids": LongTensor[seq_len]}``."""

    def __init__(self, ids: torch.Tensor):
        if ids.dim() != 2:
            raise ValueError(f"expected token ids (N, seq_len), got {tuple(ids.shape)}")
        self.ids = ids.long().contiguous()

    def __len__(self) -> int:
        return self.ids.shape[0]

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.ids[index]}


def stdlib_files(root: str | Path | None = None) -> list[Path]:
    """The top-level ``*.py`` files of the standard library (or of ``root``), sorted by name."""
    folder = Path(root if root is not None else sysconfig.get_paths()["stdlib"])
    return sorted((p for p in folder.glob("*.py") if p.is_file()), key=lambda p: p.name)


def is_validation(name: str, val_fraction: float) -> bool:
    """Whether file ``name`` belongs to the validation split (by a CRC-32 of its name)."""
    return zlib.crc32(name.encode("utf-8")) / 2**32 < val_fraction


def sequences(files: Sequence[Path], seq_len: int, cap: int, generator: torch.Generator) -> torch.Tensor:
    """The files' bytes, concatenated in order, cut into ``seq_len`` chunks; at most ``cap`` of them, drawn
    without replacement by ``generator`` (kept in text order)."""
    data = b"".join(p.read_bytes() for p in files)
    count = len(data) // seq_len
    if count == 0:
        return torch.zeros(0, seq_len, dtype=torch.long)
    ids = torch.frombuffer(bytearray(data[: count * seq_len]), dtype=torch.uint8).view(count, seq_len)
    if count > cap:
        ids = ids[torch.randperm(count, generator=generator)[:cap].sort().values]
    return ids.long()


@register_dataset("stdlib_text")
def stdlib_text(*, root: str | None = None, val_fraction: float = 0.2, seed: int = 0, seq_len: int = 128,
                max_train_sequences: int = 1024, max_val_sequences: int = 256) -> DataBundle:
    """Byte-level language modelling on the standard library's top-level ``.py`` files.

    Args:
        root: Another folder of ``.py`` files to read instead of this Python's standard library.
        val_fraction: Expected fraction of files held out for validation (split by file name, see the module).
        seed: Seed of which sequences are kept when a split has more than its cap.
        seq_len: Tokens (bytes) per sequence.
        max_train_sequences: Cap on training sequences (a CPU epoch of ``tiny_lm`` at the defaults: seconds).
        max_val_sequences: Cap on validation sequences.

    Raises:
        ConfigError: a bad setting, or a split without files or without one full sequence.
    """
    integer("dataset.seq_len", seq_len, 2, MAX_SEQ_LEN)
    integer("dataset.max_train_sequences", max_train_sequences, 1)
    integer("dataset.max_val_sequences", max_val_sequences, 1)
    files = stdlib_files(root)
    val_files = [p for p in files if is_validation(p.name, val_fraction)]
    train_files = [p for p in files if not is_validation(p.name, val_fraction)]
    generator = torch.Generator().manual_seed(seed)
    splits = {}
    for split, chosen, cap in (("train", train_files, max_train_sequences), ("val", val_files, max_val_sequences)):
        ids = sequences(chosen, seq_len, cap, generator)
        if len(ids) == 0:
            raise ConfigError("dataset.root", str(root or sysconfig.get_paths()["stdlib"]),
                              "a folder of .py files", reason=f"the {split} split has no full sequence of "
                              f"{seq_len} bytes ({len(chosen)} of {len(files)} files)")
        splits[split] = TokenSequences(ids)
    return DataBundle(train=splits["train"], val=splits["val"], in_channels=None, num_classes=None,
                      image_size=None, name="stdlib_text", task="causal_lm", vocab_size=VOCAB_SIZE,
                      seq_len=seq_len)
