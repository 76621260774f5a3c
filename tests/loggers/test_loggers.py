"""Each experiment logger writes files its own reader opens, holding every metrics.jsonl metric, the per-layer
sparsity of each mask update and the config; one smoke run logs to all three at once."""

from __future__ import annotations

import csv
import json
import sys

import pytest

# agp updates the masks at steps 0..3 of the 4 smoke steps (frequency 1); the cnn has three prunable weights
LOGGED = ["logger=[tensorboard,csv,mlflow]", "schedule.frequency=1", "trainer.pretrain_epochs=1",
          "trainer.max_steps=4"]
LAYERS = ["0.weight", "4.weight", "10.weight"]


@pytest.fixture(scope="module")
def logged_run(cli, smoke, tmp_path_factory):
    """One run with every logger: ``(run dir, summary, metrics.jsonl rows)``."""
    pytest.importorskip("tensorboard")
    pytest.importorskip("mlflow")
    out = tmp_path_factory.mktemp("loggers") / "run"
    result = cli("prune", *smoke, *LOGGED, f"hydra.run.dir={out}")
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return out, json.loads((out / "summary.json").read_text()), rows


def _metrics(rows: list[dict]) -> dict[tuple[str, int], float]:
    """``{(tag, step): value}`` of every number in metrics.jsonl, tagged as the loggers tag it."""
    out = {}
    for row in rows:
        step = row.get("step", 0)
        for key, value in row.items():
            if key not in ("phase", "step") and isinstance(value, (int, float)):
                out[(f"{row['phase']}/{key}", step)] = float(value)
    return out


def test_csv_holds_every_metric_and_each_mask_update(logged_run):
    out, summary, rows = logged_run
    with open(out / "metrics.csv", newline="") as f:
        table = list(csv.DictReader(f))
    got = {(r["metric"], int(r["step"])): float(r["value"]) for r in table}
    expected = _metrics(rows)
    assert {"pretrain/accuracy", "dense/accuracy", "prune/accuracy", "prune/lr"} <= {tag for tag, _ in expected}
    assert {k: got[k] for k in expected} == expected
    for layer in LAYERS:
        steps = sorted(int(r["step"]) for r in table if r["metric"] == f"layer_sparsity/{layer}")
        assert steps == [0, 1, 2, 3]
        assert got[(f"layer_sparsity/{layer}", 3)] == pytest.approx(summary["per_layer"][layer], abs=1e-6)
    assert got[("masks/sparsity", 3)] == pytest.approx(summary["sparsity"], abs=1e-6)
    assert got[("summary/accuracy", summary["steps"])] == summary["accuracy"]


def test_tensorboard_events_hold_scalars_histograms_and_hparams(logged_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out, summary, rows = logged_run
    acc = EventAccumulator(str(out / "tensorboard"), size_guidance={"scalars": 0, "histograms": 0, "tensors": 0})
    acc.Reload()
    tags = acc.Tags()
    for (tag, step), value in _metrics(rows).items():
        assert any(e.step == step and e.value == pytest.approx(value, rel=1e-6) for e in acc.Scalars(tag)), tag
    histograms = acc.Histograms("masks/layer_sparsity")
    assert [h.step for h in histograms] == [0, 1, 2, 3]
    last = histograms[-1].histogram_value
    assert last.num == 3 and last.max == pytest.approx(max(summary["per_layer"].values()), abs=1e-6)
    assert acc.Scalars("layer_sparsity/4.weight")[-1].value == pytest.approx(summary["per_layer"]["4.weight"])
    assert acc.Scalars("summary/accuracy")[-1].value == pytest.approx(summary["accuracy"])
    plugins = acc.PluginTagToContent("hparams")  # the HParams tab's experiment and session summaries
    assert {"_hparams_/experiment", "_hparams_/session_start_info"} <= set(plugins)
    text = acc.Tensors("config/text_summary")[0].tensor_proto.string_val[0].decode()  # the config as text
    assert "    trainer.batch_size: 64" in text.splitlines() and "tensors" in tags


def test_mlflow_run_holds_metrics_params_and_status(logged_run):
    import mlflow

    out, summary, rows = logged_run
    mlflow.set_tracking_uri((out / "mlruns").resolve().as_uri())
    runs = mlflow.search_runs(experiment_names=["prunecli"], output_format="list")
    assert len(runs) == 1
    run = runs[0]
    assert run.info.status == "FINISHED" and run.info.run_name == "run"
    assert run.data.metrics["prune/accuracy"] == pytest.approx(summary["accuracy"])
    assert run.data.metrics["summary/sparsity"] == pytest.approx(summary["sparsity"])
    assert run.data.params["sparsity"] == "0.9" and run.data.params["trainer.batch_size"] == "64"
    assert run.data.params["model._target_"].startswith("prunecli.")
    client = mlflow.MlflowClient()
    expected = _metrics(rows)
    for tag in {tag for tag, _ in expected}:
        history = {(m.step, m.value) for m in client.get_metric_history(run.info.run_id, tag)}
        assert history == {(s, v) for (t, s), v in expected.items() if t == tag}, tag
    updates = client.get_metric_history(run.info.run_id, "layer_sparsity/0.weight")
    assert sorted(m.step for m in updates) == [0, 1, 2, 3]


@pytest.mark.parametrize(("name", "module", "extra"), [
    ("tensorboard", "torch.utils.tensorboard", "tensorboard"), ("mlflow", "mlflow", "mlflow")])
def test_a_logger_whose_package_is_missing_is_one_line(cli, smoke, tmp_path, monkeypatch, name, module, extra):
    monkeypatch.setitem(sys.modules, module, None)  # import raises ImportError, as when it is not installed
    result = cli("prune", *smoke, f"logger={name}", f"hydra.run.dir={tmp_path / 'run'}")
    assert result.exit_code == 2 and result.exception is None
    assert result.error_lines[-1] == (f"error: logger={name!r} is not allowed: expected a logger whose package is "
                                      f"installed (pip install 'prunecli[{extra}]')")
    assert not (tmp_path / "run" / "metrics.jsonl").exists()  # before any work


def test_only_rank_zero_logs(monkeypatch, tmp_path):
    from omegaconf import OmegaConf

    from prunecli.loggers import build_loggers

    cfg = OmegaConf.create({"logger": {"csv": {"_target_": "prunecli.loggers.csv_logger.CSVLogger",
                                               "_partial_": True, "path": None}}})
    monkeypatch.setenv("RANK", "1")
    assert build_loggers(cfg, tmp_path) is None
    monkeypatch.setenv("RANK", "0")
    loggers = build_loggers(cfg, tmp_path)
    loggers.close(None)
    assert (tmp_path / "metrics.csv").read_text().splitlines() == ["step,metric,value"]
