"""``prunecli report`` of real runs: a run, a sweep with a failed job, a one-shot text run; bad input in one line."""

from __future__ import annotations

import html
import json
import re
import sys
from pathlib import Path

import pytest

DATA_URI = "data:image/png;base64,"


def _report(cli, *args: str) -> Path:
    result = cli("report", *args)
    assert result.exit_code == 0, (result.stderr, result.exception)
    path = Path(result.stdout.strip().removeprefix("report: "))
    assert path.name == "report.html" and path.is_file()
    return path


def _self_contained(page: Path) -> str:
    """The page's text, after checking that it embeds every PNG beside it and fetches nothing."""
    text = page.read_text()
    pngs = sorted(page.parent.glob("*.png"))
    assert pngs and text.count(DATA_URI) == len(pngs)
    assert not re.search(r"(src|href)=\"(?!data:)", text) and "<script" not in text and "http" not in text
    assert (page.parent / "report.md").is_file()
    return text


def _md_row(md: str, label: str) -> list[str]:
    """The cells of the jobs table's row of job ``label`` in report.md."""
    line = next(line for line in md.splitlines() if line.startswith(f"| {label} |"))
    return [cell.strip() for cell in line.strip("|").split(" | ")]


def test_a_run_gets_layers_curves_metrics_and_cost(cli, digits_run):
    page = _report(cli, str(digits_run))
    assert page.parent == digits_run / "report"
    assert sorted(p.name for p in page.parent.glob("*.png")) == ["curves.png", "layers.png"]
    text = _self_contained(page)
    summary = json.loads((digits_run / "summary.json").read_text())
    evaluate = json.loads((digits_run / "evaluate" / "evaluate.json").read_text())
    md = (page.parent / "report.md").read_text()
    change = summary["accuracy"] - summary["dense_accuracy"]
    assert f"| accuracy | {summary['dense_accuracy']:.4f} | {summary['accuracy']:.4f} | {change:+.4f} |" in md
    # layers in model order with their parameter counts (cnn on digits: conv 32x1x3x3, conv 64x32x3x3, fc 128x256)
    layer_rows = re.findall(r"^\| (\S+\.weight) \| ([\d,]+) \| ([\d.]+) \|", md, re.M)
    assert layer_rows == [(name, size, f"{value:.4f}") for (name, value), size in
                          zip(summary["per_layer"].items(), ["288", "18,432", "32,768"])]
    assert f"{evaluate['flops']:,} / {evaluate['flops_effective']:,}" in text
    assert f"{evaluate['latency_ms_median']:.3f}" in text


def test_a_sweep_lists_every_job_and_the_failed_one_with_its_error(cli, sweep, tmp_path):
    page = _report(cli, str(sweep), "--out", str(tmp_path / "out"))
    assert page == tmp_path / "out" / "report.html"
    text = _self_contained(page)
    md = (page.parent / "report.md").read_text()
    pngs = {p.name for p in page.parent.glob("*.png")}
    assert {"pareto_sparsity.png", "pareto_flops.png", "pareto_latency.png"} <= pngs
    for job, pruner in enumerate(["level", "agp", "l1_norm"]):
        s = json.loads((sweep / str(job) / "summary.json").read_text())
        row = _md_row(md, str(job))
        assert row[1:] == [f"pruner={pruner}", pruner, f"{s['dense_accuracy']:.4f}", f"{s['accuracy']:.4f}",
                           f"{s['sparsity']:.4f}", f"{s['params_nonzero']:,}", row[7], row[8],
                           f"{s['wall_seconds']:.1f}", "ok"]
        assert bool(row[7]) == bool(row[8]) == (job < 2)  # FLOPs and latency of the evaluated jobs only
        if job < 2:
            e = json.loads((sweep / str(job) / "evaluate" / "evaluate.json").read_text())
            assert row[7:9] == [f"{e['flops_effective']:,}", f"{e['latency_ms_median']:.3f}"]
        assert f"{job}: Per-layer sparsity" in md   # few jobs: each gets its own sections
    error = (sweep / "3" / "error.txt").read_text().splitlines()[0]
    assert error.startswith("error: sparsity=0.7 is not allowed")
    assert _md_row(md, "3")[1:3] == ["pruner=semi_structured_2_4", ""] and _md_row(md, "3")[-1] == error
    assert "## Failed jobs (1)" in md and html.escape(error) in text
    assert "1 finished run(s) have no FLOPs" in md   # job 2 has no evaluate.json


def test_several_dirs_are_one_table_and_an_evaluate_dir_is_matched_by_checkpoint(cli, sweep, digits_run, tmp_path):
    page = _report(cli, str(sweep), str(digits_run), "-o", str(tmp_path))
    md = page.with_name("report.md").read_text()
    assert [_md_row(md, label)[0] for label in ("sweep/0", "sweep/3", "run")] == ["sweep/0", "sweep/3", "run"]
    assert md.count("Per-layer sparsity") == 4  # 4 finished runs: few enough for their own sections
    # an evaluate run dir given beside the runs (as `prunecli evaluate` writes it by default) is matched
    lone = tmp_path / "lone"
    lone.mkdir()
    (lone / "summary.json").write_text((sweep / "2" / "summary.json").read_text())
    elsewhere = tmp_path / "outputs" / "evaluate"
    elsewhere.mkdir(parents=True)
    data = json.loads((sweep / "0" / "evaluate" / "evaluate.json").read_text())
    (elsewhere / "evaluate.json").write_text(json.dumps({**data, "checkpoint": str(lone / "checkpoint" / "last")}))
    page = _report(cli, str(lone), str(elsewhere), "-o", str(tmp_path / "two"))
    assert f"{data['flops']:,} / {data['flops_effective']:,}" in page.read_text()


def test_a_one_shot_text_run_reports_perplexity_and_says_there_are_no_curves(cli, text_oneshot):
    page = _report(cli, str(text_oneshot))
    _self_contained(page)
    md = page.with_name("report.md").read_text()
    s = json.loads((text_oneshot / "summary.json").read_text())
    assert f"| perplexity | {s['dense_perplexity']:.4f} | {s['perplexity']:.4f} |" in md
    assert "No training curves" in md and not page.with_name("curves.png").exists()
    rows = re.findall(r"^\| (blocks\.\S+) \| [\d,]+ \| 0\.5000 \| units \|$", md, re.M)
    assert rows == list(s["per_layer"]) and len(rows) == 8


def test_a_text_run_with_fine_tuning_draws_perplexity_curves(cli, text_oneshot, tmp_path):
    """The one-shot run's dir with the epoch lines a fine-tuned run would have written after it."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(text_oneshot, run, ignore=shutil.ignore_patterns("report"))
    with open(run / "metrics.jsonl", "a") as f:
        for step, ppl in ((10, 250.0), (20, 180.0)):
            f.write(json.dumps({"phase": "prune", "epoch": step // 10, "step": step, "loss": 5.0,
                                "perplexity": ppl, "train_perplexity": ppl + 5, "sparsity": 0.5}) + "\n")
    page = _report(cli, str(run))
    assert sorted(p.name for p in page.parent.glob("*.png")) == ["curves.png", "layers.png"]
    _self_contained(page)


def test_a_second_report_into_the_same_dir_drops_the_old_figures(cli, sweep, text_oneshot, tmp_path):
    _report(cli, str(sweep), "-o", str(tmp_path))
    page = _report(cli, str(text_oneshot), "-o", str(tmp_path))
    assert sorted(p.name for p in tmp_path.glob("*.png")) == ["layers.png"]
    _self_contained(page)


def _bad(cli, *args: str) -> str:
    result = cli("report", *args)
    assert result.exit_code == 2, (result.stdout, result.stderr, result.exception)
    assert len(result.error_lines) == 1 and result.error_lines[0].startswith("error: "), result.stderr
    return result.error_lines[0]


def test_bad_input_is_one_line_and_exit_2(cli, tmp_path, digits_run):
    assert "no such file or dir" in _bad(cli, str(tmp_path / "missing"))
    (tmp_path / "file.txt").write_text("x")
    assert "not a dir" in _bad(cli, str(tmp_path / "file.txt"))
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "notes").mkdir()
    assert "neither summary.json nor job dirs" in _bad(cli, str(tmp_path / "plain"))
    empty = tmp_path / "empty_sweep"
    empty.mkdir()
    (empty / "multirun.yaml").write_text("hydra: {}\n")
    assert "the sweep is empty" in _bad(cli, str(empty))
    unfinished = tmp_path / "unfinished"
    (unfinished / ".hydra").mkdir(parents=True)
    (unfinished / ".hydra" / "overrides.yaml").write_text("- sparsity=0.5\n")
    assert "no summary.json: the run failed or is still running" in _bad(cli, str(unfinished))
    assert "no such file or dir" in _bad(cli, str(digits_run), str(tmp_path / "missing"))
    assert "at least one prune run" in _bad(cli, str(digits_run / "evaluate"))


def test_without_matplotlib_it_says_which_extra_to_install(cli, digits_run, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib raises ImportError
    assert _bad(cli, str(digits_run)) == "error: prunecli report needs matplotlib: pip install 'prunecli[report]'"


def test_open_uses_the_browser_where_there_is_one(cli, digits_run, tmp_path, monkeypatch):
    import webbrowser

    opened = []
    monkeypatch.setattr(webbrowser, "open", lambda url, *a, **k: opened.append(url) or True)
    page = _report(cli, str(digits_run), "-o", str(tmp_path / "a"), "--open")
    assert opened == [page.resolve().as_uri()]

    def no_browser(url, *a, **k):
        raise webbrowser.Error("could not locate runnable browser")

    monkeypatch.setattr(webbrowser, "open", no_browser)
    _report(cli, str(digits_run), "-o", str(tmp_path / "b"), "--open")


@pytest.mark.parametrize("missing", ["metrics.jsonl", "checkpoint"])
def test_a_run_missing_its_metrics_or_checkpoint_still_reports(cli, digits_run, tmp_path, missing):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(digits_run, run, ignore=shutil.ignore_patterns("report", missing))
    summary = json.loads((run / "summary.json").read_text())   # as if written here
    summary.update(run_dir=str(run), checkpoint=str(run / "checkpoint" / "last"))
    (run / "summary.json").write_text(json.dumps(summary))
    page = _report(cli, str(run))
    md = page.with_name("report.md").read_text()
    assert ("No training curves" in md) == (missing == "metrics.jsonl")
    size = "" if missing == "checkpoint" else "18,432"   # parameter counts come from the checkpoint
    assert re.search(rf"^\| 4\.weight \| {size} \| 0\.\d{{4}} \|", md, re.M)


def _synthesize_sweep(run: Path, sweep: Path, n: int) -> None:
    """``n`` job dirs copied from the real ``run`` (no checkpoint), each with its own numbers, evaluate.json and
    overrides; then one failed job."""
    import shutil

    summary = json.loads((run / "summary.json").read_text())
    evaluate = json.loads((run / "evaluate" / "evaluate.json").read_text())
    presets = ["agp", "level", "l1_norm", "movement"]
    for i in range(n):
        job = sweep / str(i)
        shutil.copytree(run, job, ignore=shutil.ignore_patterns("report", "checkpoint"))
        sparsity, pruner = round(0.05 + 0.9 * (i % 25) / 25, 4), presets[i % 4]
        (job / ".hydra" / "overrides.yaml").write_text(f"- pruner={pruner}\n- sparsity={sparsity}\n")
        (job / "summary.json").write_text(json.dumps({
            **summary, "pruner": pruner, "sparsity": sparsity, "accuracy": 0.99 - sparsity * (i % 7) / 20,
            "params_nonzero": 1000 + 37 * i, "wall_seconds": 10.0 + i, "run_dir": str(job)}))
        (job / "evaluate" / "evaluate.json").write_text(json.dumps({
            **evaluate, "flops_effective": 100_000 + 997 * i, "latency_ms_median": 0.1 + i / 1000}))
    failed = sweep / str(n)
    (failed / ".hydra").mkdir(parents=True)
    (failed / ".hydra" / "overrides.yaml").write_text("- pruner=agp\n- sparsity=1.5\n")
    (failed / "error.txt").write_text("error: sparsity=1.5 is not allowed: expected a number in [0, 1)\n")


def test_a_100_job_sweep_reports_in_under_10_s(digits_run, tmp_path):
    """The whole command, in a fresh process (imports included); its CPU time, which the other processes of a
    busy machine do not inflate as they do the wall-clock time."""
    import os
    import resource
    import subprocess

    sweep = tmp_path / "sweep"
    _synthesize_sweep(digits_run, sweep, 100)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run([str(Path(sys.executable).with_name("prunecli")), "report", str(sweep)],
                          capture_output=True, text=True, env={**os.environ, "MPLBACKEND": ""}, timeout=300)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    assert done.returncode == 0, done.stderr
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    assert cpu < 10.0, cpu
    page = sweep / "report" / "report.html"
    assert page.read_text().count(DATA_URI) == 3 == len(list(page.parent.glob("*.png")))  # the Pareto plots
    md = page.with_name("report.md").read_text()
    for i in (0, 37, 99):
        s = json.loads((sweep / str(i) / "summary.json").read_text())
        row = _md_row(md, str(i))
        assert row[1:] == [f"pruner={s['pruner']} sparsity={s['sparsity']}", s["pruner"],
                           f"{s['dense_accuracy']:.4f}", f"{s['accuracy']:.4f}", f"{s['sparsity']:.4f}",
                           f"{s['params_nonzero']:,}", f"{100_000 + 997 * i:,}", f"{0.1 + i / 1000:.3f}",
                           f"{s['wall_seconds']:.1f}", "ok"]
    assert _md_row(md, "100")[-1].startswith("error: sparsity=1.5")
    assert "Per-layer sparsity" not in md   # too many jobs for each one's own sections


def test_the_report_command_imports_neither_torch_nor_hydra(digits_run, tmp_path):
    """A report reads JSON and draws: it starts fast (and its exit code 2 is the CLI's user-error code)."""
    import subprocess

    from prunecli.cli import REPORT_USER_ERROR
    from prunecli.commands import USER_ERROR_EXIT

    code = ("import sys; from prunecli.cli import app; from typer.testing import CliRunner; "
            f"r = CliRunner().invoke(app, ['report', {str(digits_run)!r}, '-o', {str(tmp_path)!r}]); "
            "print(r.exit_code, 'torch' in sys.modules, 'hydra' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["0", "False", "False"]
    assert REPORT_USER_ERROR == USER_ERROR_EXIT
