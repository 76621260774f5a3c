"""The README's Python example runs and does what it says."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def test_own_training_loop_example_runs():
    (code,) = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "README.md", "exec"), {})
    assert abs(float(out.getvalue().split()[-1]) - 0.8) < 0.005


def test_readme_names_the_commands_that_ci_runs():
    text = README.read_text()
    ci = (README.parent / ".ci" / "run").read_text()
    assert "python -m pytest -q" in text and "python -m pytest -q" in ci
    assert 'pip install -e ".[test]" torch==2.13.0' in text
    extras = '-e ".[test,hf,lightning,report,slurm,optuna,tensorboard,mlflow]" torch==2.13.0'
    assert f"pip install {extras}" in text and f"pip install -q {extras}" in ci
