"""Shared fixtures (not imports: sibling test dirs have conftest.py files of their own): run the real CLI in
process on configs shrunk to a CPU smoke run.

``SMOKE`` overrides keep the embedded digits data and the default cnn + agp, but train a few steps only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

SMOKE = [
    "trainer.pretrain_epochs=0",
    "trainer.epochs=1",
    "trainer.max_steps=4",
    "trainer.batch_size=64",
    "trainer.eval_batch_size=512",
    "trainer.progress=false",
]


@dataclass
class CliResult:
    exit_code: int
    stdout: str
    stderr: str
    exception: Any

    @property
    def error_lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.strip()]


def invoke(*args: str) -> CliResult:
    """Run ``prunecli *args`` in this process (Typer's CliRunner) and return exit code and output."""
    from typer.testing import CliRunner

    from prunecli.cli import app

    result = CliRunner().invoke(app, list(args))
    exc = result.exception if not isinstance(result.exception, SystemExit) else None
    return CliResult(result.exit_code, result.stdout, result.stderr, exc)


@pytest.fixture(scope="session")
def cli():
    """``cli(*args)``: run ``prunecli *args`` in process; returns a :class:`CliResult`."""
    return invoke


@pytest.fixture(scope="session")
def smoke() -> list[str]:
    """Overrides that shrink ``prunecli prune`` to a few CPU steps."""
    return list(SMOKE)


@pytest.fixture
def prune_run(tmp_path: Path):
    """``prune_run(*overrides, name="run")`` runs a smoke prune into ``tmp_path/name``; returns (dir, summary)."""

    def run(*overrides: str, name: str = "run") -> tuple[Path, dict[str, Any]]:
        out = tmp_path / name
        result = invoke("prune", *SMOKE, f"hydra.run.dir={out}", *overrides)
        assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
        return out, json.loads((out / "summary.json").read_text())

    return run


@pytest.fixture(scope="session")
def smoke_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One pruned checkpoint (digits, cnn, agp to 0.75 in 12 steps), shared by the evaluate/export tests."""
    out = tmp_path_factory.mktemp("smoke") / "run"
    result = invoke("prune", *SMOKE, "trainer.max_steps=12", "sparsity=0.75", "schedule.frequency=2",
                    f"hydra.run.dir={out}")
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    return out / "checkpoint" / "last"


@pytest.fixture(scope="session")
def channel_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One channel-pruned checkpoint (digits, cnn, l1_norm to half the channels in 4 steps), for compact exports."""
    out = tmp_path_factory.mktemp("channel") / "run"
    result = invoke("prune", *SMOKE, "pruner=l1_norm", "sparsity=0.5", f"hydra.run.dir={out}")
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    return out / "checkpoint" / "last"


@pytest.fixture(autouse=True, scope="session")
def one_thread():
    """The whole session on one torch thread (session scope, so module-scoped fixtures run on it too).

    The tests use tiny tensors that gain nothing from threads, and on a loaded 2-core machine torch's spinning
    worker threads make them 50-100x slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
