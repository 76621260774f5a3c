"""The embedded text dataset: byte tokenizer, a file-name split that shares no file, capped seeded sequences."""

import pytest
import torch

from prunecli.data import build_dataset
from prunecli.data.stdlib_text import ByteTokenizer, is_validation, stdlib_files
from prunecli.errors import ConfigError


def test_byte_tokenizer_round_trips_any_text():
    tok = ByteTokenizer()
    text = "def f(x):\n    return x  # naïve ∑ 🐍"
    ids = tok.encode(text)
    assert tok.vocab_size == 256 and all(0 <= i < 256 for i in ids)
    assert len(ids) == len(text.encode("utf-8")) and ids[:3] == [100, 101, 102]
    assert tok.decode(ids) == text


def test_split_is_by_file_name_and_shares_no_file():
    files = stdlib_files()
    assert len(files) > 50 and [p.name for p in files] == sorted(p.name for p in files)
    val = {p.name for p in files if is_validation(p.name, 0.2)}
    train = {p.name for p in files if not is_validation(p.name, 0.2)}
    assert val and train and not val & train and len(val) + len(train) == len(files)
    assert 0.05 < len(val) / len(files) < 0.4


def test_bundle_sizes_caps_and_seed(tmp_path):
    data = build_dataset("stdlib_text", seq_len=32, max_train_sequences=50, max_val_sequences=20)
    assert (data.task, data.vocab_size, data.seq_len, data.name) == ("causal_lm", 256, 32, "stdlib_text")
    assert data.in_channels is None and len(data.train) == 50 and len(data.val) == 20
    sample = data.train[0]["input_ids"]
    assert sample.dtype == torch.long and sample.shape == (32,) and int(sample.max()) < 256
    again = build_dataset("stdlib_text", seq_len=32, max_train_sequences=50, max_val_sequences=20)
    other = build_dataset("stdlib_text", seq_len=32, max_train_sequences=50, max_val_sequences=20, seed=1)
    assert torch.equal(data.train.ids, again.train.ids) and not torch.equal(data.train.ids, other.train.ids)


def test_root_folder_and_errors(tmp_path):
    (tmp_path / "a.py").write_bytes(b"x" * 100)
    with pytest.raises(ConfigError, match="dataset.root"):
        build_dataset("stdlib_text", root=str(tmp_path), seq_len=8)  # one file: one split is empty
    with pytest.raises(ConfigError, match="dataset.seq_len"):
        build_dataset("stdlib_text", seq_len=1)
