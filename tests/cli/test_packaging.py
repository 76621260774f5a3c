"""The installed console script, the wheel's contents, and a non-editable install run from elsewhere."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _prunecli_script() -> str:
    script = shutil.which("prunecli", path=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])
    if script is None:
        pytest.skip("the prunecli console script is not installed (pip install -e .)")
    return script


def test_console_script_runs_prune_from_another_directory(smoke, tmp_path):
    out = tmp_path / "run"
    proc = subprocess.run([_prunecli_script(), "prune", *smoke, f"hydra.run.dir={out}"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["sparsity"] > 0 and "accuracy" in proc.stdout
    bad = subprocess.run([_prunecli_script(), "prune", "sparsity=2"], cwd=tmp_path, capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.strip().splitlines()[-1].startswith("error: sparsity=2")
    assert "Traceback" not in bad.stderr


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """A wheel built from a copy of the sources (so no build/ or egg-info lands in the checkout)."""
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "setup.py", "README.md", "prunecli-torchvision.pth"):
        shutil.copy(REPO / name, src / name)
    for name in ("prunecli", "conf"):
        shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    dist = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(dist), str(src)], check=True, capture_output=True, timeout=300)
    (whl,) = dist.glob("prunecli-*.whl")
    return whl


def test_wheel_contains_every_yaml_and_package(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    yamls = {f"prunecli/conf/{p.relative_to(REPO / 'conf').as_posix()}" for p in (REPO / "conf").rglob("*.yaml")}
    assert yamls and yamls <= names, sorted(yamls - names)
    packages = {f"{p.parent.relative_to(REPO).as_posix()}/__init__.py"
                for p in (REPO / "prunecli").rglob("__init__.py")}
    assert packages <= names, sorted(packages - names)
    assert "prunecli/conf/__init__.py" in names
    assert "prunecli-torchvision.pth" in names  # site-packages' start-up file: see setup.py


@pytest.mark.slow
def test_non_editable_install_finds_its_configs_from_any_directory(wheel, tmp_path):
    venv = _venv_seeing_this_environment(tmp_path / "venv")
    python = venv / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--force-reinstall", str(wheel)],
                   check=True, capture_output=True, timeout=300)
    code = "import prunecli.conf, os; print(os.path.dirname(prunecli.conf.__file__))"
    where = subprocess.run([str(python), "-c", code], cwd=tmp_path, check=True, capture_output=True,
                           text=True).stdout.strip()
    assert where.startswith(str(venv)), where  # the installed copy, not the checkout
    out = tmp_path / "run"
    proc = subprocess.run([str(venv / "bin" / "prunecli"), "prune", "experiment=smoke", f"hydra.run.dir={out}"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert json.loads((out / "summary.json").read_text())["dataset"] == "fake"
    # The start-up file lets transformers' model classes import in a script that never imports prunecli.
    code = ("import sys; from transformers import BertConfig, BertModel; "
            "print('prunecli' in sys.modules, 'torch' in sys.modules)")
    if subprocess.run([str(python), "-c", "import transformers"], capture_output=True).returncode == 0:
        done = subprocess.run([str(python), "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0 and done.stdout.split() == ["True", "True"], done.stderr[-1000:]
    quiet = subprocess.run([str(python), "-c", "import sys; print('torch' in sys.modules)"], cwd=tmp_path,
                           capture_output=True, text=True, timeout=120)
    assert quiet.stdout.strip() == "False"  # start-up imports prunecli's finder only, never torch


def _venv_seeing_this_environment(venv: Path) -> Path:
    """A new venv that sees this environment's packages (torch, typer ...) behind its own.

    ``venv --system-site-packages`` is not enough: run from inside a venv, ``sys.executable`` makes a venv on
    the *base* interpreter, which has none of them. A plain ``.pth`` line adds this environment's
    site-packages after the new venv's own, without running the ``.pth`` files there (so the editable
    install of the checkout stays off and the wheel installed into the new venv is what imports).
    """
    import site
    import sysconfig

    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    ours = [p for p in {*site.getsitepackages(), sysconfig.get_paths()["purelib"]} if Path(p).is_dir()]
    (new_site,) = (venv / "lib").glob("python*/site-packages")
    (new_site / "_outer_environment.pth").write_text("\n".join(sorted(ours)) + "\n")
    return venv
