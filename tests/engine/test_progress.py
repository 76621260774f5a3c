"""The progress bar shows speed, ETA and the phase's optimizer steps; it is silent when not on a terminal."""

from __future__ import annotations

import io
import re

from rich.console import Console

from prunecli.engine import progress
from prunecli.engine.progress import EpochBar


def _terminal() -> tuple[Console, io.StringIO]:
    buf = io.StringIO()
    return Console(file=buf, force_terminal=True, width=200, color_system=None), buf


def test_bar_renders_speed_eta_and_phase_steps():
    console, buf = _terminal()
    with EpochBar("prune 1/2", 6, True, steps=(4, 10), phase="prune steps", console=console) as bar:
        for _ in range(6):
            bar.advance()
            bar.step()
        bar.status(loss=0.25, acc=0.5)
        bar._progress.refresh()
    text = buf.getvalue()
    assert "prune 1/2" in text and "6/6" in text and "loss 0.2500  acc 0.5000" in text
    assert "prune steps" in text and "10/10" in text          # 4 done before this epoch + 6
    assert re.search(r"\d+\.\d (it/s|s/it)", text)             # speed
    assert re.search(r"\d:\d\d:\d\d < \d:\d\d:\d\d", text)     # elapsed < remaining


def test_bar_without_steps_has_one_row():
    console, buf = _terminal()
    with EpochBar("pretrain 1/1", 2, True, console=console) as bar:
        bar.advance()
        bar.step()   # no phase row: nothing to advance
        bar._progress.refresh()
    assert "pretrain 1/1" in buf.getvalue() and "steps" not in buf.getvalue()


def test_silent_when_disabled_or_not_a_terminal(monkeypatch):
    console, buf = _terminal()
    with EpochBar("prune 1/1", 3, False, steps=(0, 3), console=console) as bar:
        bar.advance(), bar.step(), bar.status(loss=1.0)
    assert buf.getvalue() == "" and not bar.enabled
    assert EpochBar("prune 1/1", 3, None).enabled is False   # pytest's stderr is no terminal


def test_cli_progress_true_renders_the_columns(cli, smoke, tmp_path, monkeypatch):
    console, buf = _terminal()
    monkeypatch.setattr(progress, "Console", lambda **kwargs: console)
    overrides = [o for o in smoke if not o.startswith("trainer.progress")]
    result = cli("prune", *overrides, "trainer.progress=true", "trainer.max_steps=3", f"hydra.run.dir={tmp_path}")
    assert result.exit_code == 0, (result.stdout, result.stderr)
    text = buf.getvalue()
    assert "prune 1/1" in text and "prune steps" in text and "3/3" in text
    assert "it/s" in text or "s/it" in text
