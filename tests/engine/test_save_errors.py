"""A checkpoint that cannot be written (a full disk) ends the run in one line, leaves no temp file or dir, and
keeps the last good checkpoint readable and resumable."""

from __future__ import annotations

import errno
import os

import pytest

import prunecli._atomic as atomic
import prunecli.checkpoint as checkpoint
from prunecli.checkpoint import load_checkpoint


def _disk_full_at(monkeypatch, save: int) -> None:
    """The ``save``-th checkpoint's state file fails half-written with ENOSPC."""
    real, calls = checkpoint.write_bytes, {"n": 0}

    def write(path, data):
        if path.name == "state.safetensors":
            calls["n"] += 1
            if calls["n"] == save:
                path.with_name(f".{path.name}.tmp").write_bytes(data[: len(data) // 2])
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        real(path, data)

    monkeypatch.setattr(checkpoint, "write_bytes", write)


def _leftovers(out):
    return [p.name for p in out.rglob("*") if p.name.endswith((".tmp", ".old"))]


@pytest.mark.parametrize("save, intact", [(3, "checkpoint/last from step 2 is intact"),
                                          (1, "no earlier checkpoint/last was written")])
def test_full_disk_while_saving_is_one_line_and_keeps_the_last_checkpoint(cli, smoke, tmp_path, monkeypatch,
                                                                          save, intact):
    out = tmp_path / "run"
    _disk_full_at(monkeypatch, save)
    result = cli("prune", *smoke, "trainer.checkpoint_every=1", f"hydra.run.dir={out}")
    assert result.exit_code == 2 and "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.error_lines if line.startswith("error:")]
    assert errors == [f"error: cannot write checkpoint/last in {out}: no space left on device; {intact}"]
    assert _leftovers(out) == []
    monkeypatch.undo()
    if save == 1:
        assert not (out / "checkpoint" / "last").exists()
        return
    assert load_checkpoint(out, with_state=True).state["progress"]["step"] == 2
    assert cli("prune", f"trainer.resume={out}").exit_code == 0
    assert load_checkpoint(out).meta["progress"]["step"] == 4


def test_replace_dir_failing_at_the_swap_puts_the_old_dir_back(tmp_path, monkeypatch):
    target = tmp_path / "last"
    atomic.replace_dir(target, lambda d: (d / "a").write_text("old"))
    real, calls = os.replace, {"n": 0}

    def replace(src, dst):
        calls["n"] += 1
        if calls["n"] == 2:  # the old dir has moved to last.old; the new one fails to take its place
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        real(src, dst)

    monkeypatch.setattr(atomic.os, "replace", replace)
    with pytest.raises(OSError):
        atomic.replace_dir(target, lambda d: (d / "a").write_text("new"))
    assert (target / "a").read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["last"]


def test_replace_dir_interrupted_while_filling_leaves_no_temp_dir(tmp_path):
    def fill(d):
        (d / "a").write_text("partial")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic.replace_dir(tmp_path / "last", fill)
    assert list(tmp_path.iterdir()) == []
