"""Your own text through the CLI: prune tiny_lm on local files (dataset=text_files), evaluate the run from another
folder with the same perplexity; padded texts; bad input as one line."""

from __future__ import annotations

import json
import math
import random

import pytest

pytest.importorskip("datasets")

SMOKE_TEXT = ["experiment=smoke", "dataset=text_files", "model=tiny_lm", "dataset.max_length=64"]


def write_corpus(folder, n=300):
    """Short sentences of a small vocabulary: a byte LM learns them well below uniform perplexity (256)."""
    rng = random.Random(0)
    words = "the cat sat on a mat while dogs ran in the park and birds sang".split()
    lines = [" ".join(rng.choice(words) for _ in range(12)) for _ in range(n)]
    with (folder / "corpus.jsonl").open("w") as f:
        for line in lines:
            f.write(json.dumps({"text": line, "id": len(line)}) + "\n")
    (folder / "corpus.txt").write_text("\n".join(lines) + "\n")
    return lines


def run(cli, *args):
    result = cli(*args)
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    return result


def test_prune_then_evaluate_from_elsewhere_gives_the_same_perplexity(cli, tmp_path, monkeypatch):
    data = tmp_path / "data"
    data.mkdir()
    write_corpus(data)
    monkeypatch.chdir(data)  # a relative path: the run records it absolute
    run(cli, "prune", *SMOKE_TEXT, "dataset.train=corpus.jsonl", f"hydra.run.dir={tmp_path / 'run'}")
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["dataset"] == "text_files" and summary["steps"] == 12
    assert summary["sparsity"] == pytest.approx(0.5, abs=1e-3)
    assert math.isfinite(summary["perplexity"]) and summary["perplexity"] < min(80, summary["dense_perplexity"])
    meta = json.loads((tmp_path / "run" / "checkpoint" / "last" / "meta.json").read_text())
    assert meta["config"]["dataset"]["train"] == str(data / "corpus.jsonl")

    monkeypatch.chdir(tmp_path)
    run(cli, "evaluate", f"checkpoint={tmp_path / 'run'}", f"hydra.run.dir={tmp_path / 'e'}")
    report = json.loads((tmp_path / "e" / "evaluate.json").read_text())
    from prunecli.data import build_dataset

    held_out = build_dataset("text_files", train=str(data / "corpus.jsonl"), max_length=64).val
    assert report["task"] == "causal_lm" and report["samples"] == len(held_out) > 40  # 60 texts, packed
    assert report["perplexity"] == pytest.approx(summary["perplexity"], rel=1e-5)


def test_padded_texts_train_and_evaluate_alike(cli, tmp_path):
    lines = write_corpus(tmp_path)
    corpus = str(tmp_path / "corpus.txt")
    run(cli, "prune", *SMOKE_TEXT, f"dataset.train={corpus}", "dataset.packing=false",
        f"hydra.run.dir={tmp_path / 'run'}")
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["perplexity"] < summary["dense_perplexity"] and summary["steps"] == 12
    run(cli, "evaluate", f"checkpoint={tmp_path / 'run'}", f"hydra.run.dir={tmp_path / 'e'}")
    report = json.loads((tmp_path / "e" / "evaluate.json").read_text())
    assert report["samples"] == round(len(lines) * 0.2)  # one text per sample: the held-out rows
    assert report["perplexity"] == pytest.approx(summary["perplexity"], rel=1e-5)


@pytest.mark.parametrize("overrides, fragment", [
    ((), "error: dataset.train=None is not allowed: expected a file, a glob"),
    (("dataset.train={data}/missing.jsonl",), "missing.jsonl' is not allowed"),
    (("dataset.train={data}/corpus.jsonl", "dataset.text_field=body"), "dataset.text_field='body' is not allowed: "
                                                                      "expected a column of"),
    (("dataset.train={data}/corpus.jsonl", "dataset.tokenizer={data}"), "dataset.tokenizer="),
    (("dataset.train={data}/corpus.jsonl", "dataset.label_field=id"),  # a task/model mismatch
     "model='tiny_lm' is not allowed: expected a model for the dataset's task text_classification"),
])
def test_bad_text_input_is_one_line_and_exit_2(cli, tmp_path, overrides, fragment):
    write_corpus(tmp_path)
    result = cli("prune", *SMOKE_TEXT, *(o.format(data=tmp_path) for o in overrides), f"hydra.run.dir={tmp_path / 'r'}")
    assert result.exit_code == 2 and result.exception is None, (result.stdout, result.stderr)
    errors = [line for line in result.error_lines if line.startswith("error:")]
    assert len(errors) == 1 and fragment in errors[0] and "Traceback" not in result.stderr
