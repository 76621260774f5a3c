"""A Hugging Face tokenizer folder made offline: a word-level vocabulary of a few lines, saved with save_pretrained."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

SPECIAL = {"pad_token": "[PAD]", "unk_token": "[UNK]", "eos_token": "[EOS]"}


def make_tokenizer(folder: Path, lines: Sequence[str]) -> Path:
    """A ``PreTrainedTokenizerFast`` (whitespace words, ids in first-seen order after the special tokens) in
    ``folder``, loadable with ``AutoTokenizer.from_pretrained(folder, local_files_only=True)``."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {token: i for i, token in enumerate(SPECIAL.values())}
    for line in lines:
        for word in line.split():
            vocab.setdefault(word, len(vocab))
    core = Tokenizer(models.WordLevel(vocab, unk_token=SPECIAL["unk_token"]))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=core, **SPECIAL).save_pretrained(str(folder))
    return folder
