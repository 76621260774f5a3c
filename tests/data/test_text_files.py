"""dataset=text_files: local json/jsonl/csv/parquet/txt read with Hugging Face datasets, packed or padded, labels,
a local tokenizer, the split, caps, and each bad input as one ConfigError naming its key."""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import pytest
import torch

pytest.importorskip("datasets")

from prunecli.data import build_dataset  # noqa: E402
from prunecli.errors import ConfigError  # noqa: E402

TEXTS = [f"sample {i} says {'yes' if i % 3 else 'no'}" for i in range(40)]
LABELS = ["pos" if i % 3 else "neg" for i in range(40)]


def write_jsonl(path: Path, texts=TEXTS, labels=LABELS) -> str:
    with path.open("w") as f:
        for text, label in zip(texts, labels):
            f.write(json.dumps({"text": text, "label": label}) + "\n")
    return str(path)


def write_csv(path: Path, rows) -> str:
    lines = ["body,y", *(f"{text},{label}" for text, label in rows)]
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def texts_of(data, split):
    """The texts a padded split holds (its real tokens as bytes, the trailing newline dropped)."""
    ids, mask = data.tensors["input_ids"], data.tensors["attention_mask"]
    return [bytes(row[m.bool()].tolist()).decode().rstrip("\n") for row, m in zip(ids, mask)]


def test_packing_concatenates_texts_ended_by_newline_into_full_blocks(tmp_path):
    path = write_jsonl(tmp_path / "a.jsonl")
    data = build_dataset("text_files", train=path, val=path, max_length=16)
    stream = "".join(text + "\n" for text in TEXTS).encode()
    assert (data.task, data.vocab_size, data.seq_len, data.num_classes) == ("causal_lm", 256, 16, None)
    assert len(data.train) == len(stream) // 16 == len(data.val)
    assert set(data.train[0]) == {"input_ids"}  # full blocks: no padding, no mask
    blocks = torch.stack([data.train[i]["input_ids"] for i in range(len(data.train))])
    assert bytes(blocks.flatten().tolist()) == stream[: len(blocks) * 16]
    assert data.recorded == {"train": path, "val": path}


def test_without_val_a_seeded_fraction_of_rows_is_held_out(tmp_path):
    path = write_jsonl(tmp_path / "a.jsonl")
    one = build_dataset("text_files", train=path, packing=False, max_length=32)
    again = build_dataset("text_files", train=path, packing=False, max_length=32)
    other = build_dataset("text_files", train=path, packing=False, max_length=32, seed=1)
    train, val = texts_of(one.train, "train"), texts_of(one.val, "val")
    assert (len(train), len(val)) == (32, 8)  # round(40 * 0.2) rows held out
    assert sorted(train + val) == sorted(TEXTS) and not set(train) & set(val)
    assert train == [t for t in TEXTS if t in set(train)]  # file order kept
    assert val == texts_of(again.val, "val") and val != texts_of(other.val, "val")


def test_padding_masks_every_position_after_the_text_and_its_newline(tmp_path):
    path = write_jsonl(tmp_path / "a.jsonl", ["ab", "x" * 40], ["a", "b"])
    data = build_dataset("text_files", train=path, val=path, packing=False, max_length=8)
    short, long = data.train[0], data.train[1]
    assert short["input_ids"].tolist() == [97, 98, 10, 0, 0, 0, 0, 0]
    assert short["attention_mask"].tolist() == [1, 1, 1, 0, 0, 0, 0, 0]
    assert long["input_ids"].tolist() == [120] * 8 and long["attention_mask"].sum() == 8


def test_string_labels_are_sorted_class_ids_and_recorded(tmp_path):
    path = write_jsonl(tmp_path / "a.jsonl")
    data = build_dataset("text_files", train=path, val=path, label_field="label", max_length=24)
    assert (data.task, data.num_classes, data.recorded["classes"]) == ("text_classification", 2, ["neg", "pos"])
    labels = data.train.tensors["labels"]
    assert labels.tolist() == [1 if label == "pos" else 0 for label in LABELS]
    assert set(data.train[0]) == {"input_ids", "attention_mask", "labels"}
    ordered = build_dataset("text_files", train=path, val=path, label_field="label", classes=["pos", "neg"])
    assert ordered.train.tensors["labels"].tolist() == [0 if label == "pos" else 1 for label in LABELS]


def test_csv_int_labels_are_the_class_ids(tmp_path):
    rows = [(f"row {i}", i % 3) for i in range(12)]
    path = write_csv(tmp_path / "a.csv", rows)
    data = build_dataset("text_files", train=path, val=path, text_field="body", label_field="y", max_length=16)
    assert (data.num_classes, data.train.tensors["labels"].tolist()) == (3, [i % 3 for i in range(12)])
    assert "classes" not in data.recorded
    ids = data.train[5]["input_ids"][: len("row 5")]
    assert bytes(ids.tolist()) == b"row 5"


def test_plain_text_is_a_sample_per_line_and_parquet_reads_like_json(tmp_path):
    (tmp_path / "a.txt").write_text("first line\nsecond line\n")
    data = build_dataset("text_files", train=str(tmp_path / "a.txt"), val=str(tmp_path / "a.txt"), packing=False,
                         max_length=16)
    assert texts_of(data.train, "train") == ["first line", "second line"]
    import datasets

    datasets.Dataset.from_dict({"text": TEXTS[:10], "label": LABELS[:10]}).to_parquet(str(tmp_path / "a.parquet"))
    data = build_dataset("text_files", train=str(tmp_path / "*.parquet"), val=str(tmp_path / "a.parquet"),
                         label_field="label", max_length=32)
    assert texts_of(data.val, "val") == TEXTS[:10] and data.num_classes == 2


def test_caps_keep_a_seeded_subset_in_order(tmp_path):
    path = write_jsonl(tmp_path / "a.jsonl")
    data = build_dataset("text_files", train=path, val=path, packing=False, max_train_samples=5, max_val_samples=3)
    train = texts_of(data.train, "train")
    assert (len(train), len(data.val)) == (5, 3) and train == sorted(train, key=TEXTS.index)


def test_a_local_tokenizer_folder_encodes_and_pads(tmp_path):
    pytest.importorskip("transformers")
    from _tokenizer import make_tokenizer

    folder = make_tokenizer(tmp_path / "tok", TEXTS)
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    path = write_jsonl(tmp_path / "a.jsonl")
    data = build_dataset("text_files", train=path, val=path, label_field="label", max_length=8, tokenizer=str(folder))
    assert data.vocab_size == len(tok)
    first = tok(TEXTS[0])["input_ids"]
    assert data.train[0]["input_ids"].tolist() == first + [tok.pad_token_id] * (8 - len(first))
    assert data.train[0]["attention_mask"].tolist() == [1] * len(first) + [0] * (8 - len(first))
    assert data.recorded["tokenizer"] == str(folder.resolve())


def test_the_arrow_cache_is_a_temporary_folder_removed_after_reading(tmp_path, monkeypatch):
    made = []
    real = tempfile.TemporaryDirectory

    def recording(*args, **kwargs):
        folder = real(*args, **kwargs)
        made.append(Path(folder.name))
        return folder

    monkeypatch.setattr(tempfile, "TemporaryDirectory", recording)
    build_dataset("text_files", train=write_jsonl(tmp_path / "a.jsonl"), max_length=16)
    assert len(made) == 1 and made[0].name.startswith("prunecli-datasets-") and not made[0].exists()


def bad(tmp_path, **kw) -> str:
    with pytest.raises(ConfigError) as err:
        build_dataset("text_files", **kw)
    assert "\n" not in str(err.value)
    return str(err.value)


def test_bad_input_is_one_line_naming_the_key(tmp_path):
    path = write_jsonl(tmp_path / "a.jsonl")
    assert bad(tmp_path).startswith("dataset.train=None is not allowed")
    missing = bad(tmp_path, train=str(tmp_path / "none.jsonl"))
    assert missing.startswith("dataset.train='") and missing.endswith("(no such file)")
    assert "dataset.val=" in bad(tmp_path, train=path, val=str(tmp_path / "v*.jsonl"))
    (tmp_path / "a.xml").write_text("<a/>")
    assert bad(tmp_path, train=str(tmp_path / "a.xml")).startswith("dataset.format='auto' is not allowed")
    assert "auto, csv, json, parquet, text" in bad(tmp_path, train=path, format="xml")
    assert bad(tmp_path, train=path, text_field="body").endswith(f"a column of {path}: text, label")
    assert bad(tmp_path, train=path, label_field="y").startswith("dataset.label_field='y'")
    one = write_jsonl(tmp_path / "one.jsonl", TEXTS, ["pos"] * 40)
    assert "at least two classes (the train split has ['pos'])" in bad(tmp_path, train=one, label_field="label")
    assert "none of tokenizer.json" in bad(tmp_path, train=path, tokenizer=str(tmp_path))
    assert "no such folder" in bad(tmp_path, train=path, tokenizer=str(tmp_path / "nope"))
    assert "(the train split has no sample of 4096 tokens (32 texts))" in bad(tmp_path, train=path, max_length=4096)
    short = write_jsonl(tmp_path / "short.jsonl", ["hi"], ["pos"])
    empty_val = bad(tmp_path, train=path, val=short, max_length=64)
    assert empty_val.startswith(f"dataset.val='{short}'") and "the val split has no sample of 64 tokens" in empty_val
    assert bad(tmp_path, train=path, task="qa").startswith("dataset.task='qa'")
    assert "task text_classification needs labels" in bad(tmp_path, train=path, task="text_classification")
    other = write_jsonl(tmp_path / "other.jsonl", TEXTS, ["maybe"] * 40)
    assert "row 0 of the val split has 'maybe'" in bad(tmp_path, train=path, val=other, label_field="label")
    (tmp_path / "broken.jsonl").write_text('{"text": "a"}\n{not json\n')
    assert bad(tmp_path, train=str(tmp_path / "broken.jsonl")).startswith("dataset.train=")


def test_without_datasets_the_error_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)  # import datasets raises ImportError
    assert "pip install prunecli[hf]" in bad(tmp_path, train=write_jsonl(tmp_path / "a.jsonl"))
