"""Text classification through the CLI with a Hugging Face model directory: a tiny BERT saved with its own
tokenizer, local CSV files, string labels; prune -> evaluate -> export onnx; a missing text field is one line."""

from __future__ import annotations

import csv
import json
import random

import pytest

import prunecli  # noqa: F401  (before transformers: its model classes import torchvision)

pytest.importorskip("transformers")
pytest.importorskip("datasets")

from _tokenizer import make_tokenizer  # noqa: E402  (tests/_tokenizer.py, beside conftest.py)

GOOD = "great fine lovely superb nice".split()
BAD = "awful poor dreadful nasty grim".split()
FILLER = "the film was a and it story plot acting".split()
RUN = ["model=hf", "dataset=text_files", "dataset.text_field=sentence", "dataset.label_field=sentiment",
       "dataset.max_length=16", "trainer/optimizer=adamw", "trainer.optimizer.lr=0.003", "trainer.epochs=8",
       "trainer.batch_size=16", "trainer.progress=false", "pruner=agp", "sparsity=0.5"]


def _rows(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        label = rng.choice(["negative", "positive"])
        words = [rng.choice(FILLER) for _ in range(6)] + [rng.choice(GOOD if label == "positive" else BAD)]
        rng.shuffle(words)
        rows.append({"sentence": " ".join(words), "sentiment": label})
    return rows


def _write(path, rows):
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["sentence", "sentiment"])
        writer.writeheader()
        writer.writerows(rows)


@pytest.fixture(scope="module")
def bert_run(cli, tmp_path_factory):
    from transformers import BertConfig, BertForSequenceClassification

    root = tmp_path_factory.mktemp("bert")
    model_dir = root / "bert"
    tokenizer = make_tokenizer(model_dir, [" ".join(GOOD + BAD + FILLER)])
    vocab = len(json.loads((tokenizer / "tokenizer.json").read_text())["model"]["vocab"])
    config = BertConfig(vocab_size=vocab, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=64, max_position_embeddings=32, num_labels=2)
    BertForSequenceClassification(config).save_pretrained(model_dir)
    _write(root / "train.csv", _rows(320, 0))
    _write(root / "val.csv", _rows(80, 1))
    out = root / "run"
    result = cli("prune", *RUN, f"model.path={model_dir}", f"dataset.train={root / 'train.csv'}",
                 f"dataset.val={root / 'val.csv'}", f"hydra.run.dir={out}")
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    return root, out, json.loads((out / "summary.json").read_text())


def test_a_bert_directory_learns_the_labels_while_pruned(bert_run):
    _, _, summary = bert_run
    assert summary["model"] == "hf" and summary["dataset"] == "text_files"
    assert summary["sparsity"] == pytest.approx(0.5, abs=1e-3)
    assert summary["accuracy"] >= 0.9  # one sentiment word among six fillers; chance is 0.5


def test_evaluate_and_onnx_export_of_the_classifier(cli, bert_run, tmp_path):
    import onnxruntime as ort

    _, out, summary = bert_run
    result = cli("evaluate", f"checkpoint={out}", f"hydra.run.dir={tmp_path / 'e'}")
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    report = json.loads((tmp_path / "e" / "evaluate.json").read_text())
    assert report["task"] == "text_classification" and report["samples"] == 80
    assert report["accuracy"] == pytest.approx(summary["accuracy"], abs=1e-9)
    result = cli("export", f"checkpoint={out}", "format=onnx", f"hydra.run.dir={tmp_path / 'o'}")
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    info = json.loads((tmp_path / "o" / "export.json").read_text())
    assert info["match"] is True and info["inputs"] == ["input_ids", "attention_mask"]
    session = ort.InferenceSession(str(tmp_path / "o" / "model.onnx"), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == ["logits"]


def test_a_text_field_that_is_not_in_the_file_is_one_line(cli, bert_run, tmp_path):
    root, _, _ = bert_run
    result = cli("prune", *RUN, f"model.path={root / 'bert'}", f"dataset.train={root / 'train.csv'}",
                 "dataset.text_field=review", f"hydra.run.dir={tmp_path / 'x'}")
    assert result.exit_code == 2
    (line,) = [s for s in result.stderr.splitlines() if s.strip()]
    assert line.startswith("error: dataset.text_field='review'") and "sentence" in line and "sentiment" in line
