"""Exports write regular files only, all or nothing: a refused target, a rejected ONNX graph, a compact refusal
or a failing disk leaves neither the output nor a temp file, and is one ``error:`` line with exit code 2."""

from __future__ import annotations

import errno
import json
import os
import socket
import stat

import pytest
from test_bad_input import _assert_one_line


def _export(cli, checkpoint, tmp_path, *overrides):
    return cli("export", f"checkpoint={checkpoint}", *overrides, f"hydra.run.dir={tmp_path / 'run'}")


def _assert_clean(directory, run_dir) -> None:
    """Nothing of the export in ``directory`` (the output's) and no export.json in the run dir."""
    assert not [p.name for p in directory.iterdir() if p.name.startswith(("model", ".model", "m.", ".m."))]
    assert not (run_dir / "export.json").exists()


@pytest.mark.parametrize("kind", ["directory", "fifo", "socket"])
def test_existing_non_regular_output_is_refused_and_left_alone(cli, smoke_checkpoint, tmp_path, kind):
    target = tmp_path / "target"
    if kind == "directory":
        target.mkdir()
    elif kind == "fifo":
        os.mkfifo(target)
    else:
        sock = socket.socket(socket.AF_UNIX)
        sock.bind(str(target))
    mode = target.stat().st_mode
    result = _export(cli, smoke_checkpoint, tmp_path, f"output={target}")
    _assert_one_line(result, f"output='{target}'", "regular file path", f"is a {kind}")
    assert target.stat().st_mode == mode
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run", "target"]
    assert not (tmp_path / "run" / "export.json").exists()


def test_device_output_is_refused_and_left_a_device(cli, smoke_checkpoint, tmp_path):
    result = _export(cli, smoke_checkpoint, tmp_path, "output=/dev/full")
    _assert_one_line(result, "output='/dev/full'", "character device")
    assert stat.S_ISCHR(os.stat("/dev/full").st_mode)


def test_output_where_no_file_can_be_created_is_one_line(cli, smoke_checkpoint, tmp_path):
    result = _export(cli, smoke_checkpoint, tmp_path, "output=/proc/x.safetensors")
    _assert_one_line(result, "output='/proc/x.safetensors'", "writable directory")
    assert not os.path.exists("/proc/x.safetensors")


def test_dense_output_named_like_its_spec_is_refused(cli, smoke_checkpoint, tmp_path):
    result = _export(cli, smoke_checkpoint, tmp_path, f"output={tmp_path / 'm.json'}")
    _assert_one_line(result, "not ending in .json")
    _assert_clean(tmp_path, tmp_path / "run")


def test_rejected_onnx_graph_is_not_left_on_disk(cli, smoke_checkpoint, tmp_path, monkeypatch):
    import prunecli.export.onnx as onnx_format

    monkeypatch.setattr(onnx_format, "max_abs_diff", lambda model, path, example: 0.5)
    out = tmp_path / "m.onnx"
    out.write_bytes(b"previous export")
    result = _export(cli, smoke_checkpoint, tmp_path, "format=onnx", f"output={out}")
    _assert_one_line(result, "onnx.atol=0.0001", "differ from PyTorch by 0.5", "was not written")
    assert out.read_bytes() == b"previous export"   # the old file stays as it was
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx", "run"]
    assert not (tmp_path / "run" / "export.json").exists()


@pytest.mark.parametrize("fmt, code", [("dense", errno.ENOSPC), ("onnx", errno.EIO)])
def test_failing_disk_is_one_line_and_leaves_no_file(cli, smoke_checkpoint, tmp_path, monkeypatch, fmt, code):
    def fsync(fd):   # fsync is where a full or failing disk reports a lost write
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, "fsync", fsync)
    out = tmp_path / "model.out"
    result = _export(cli, smoke_checkpoint, tmp_path, f"format={fmt}", f"output={out}")
    _assert_one_line(result, f"output='{out}'", os.strerror(code))
    _assert_clean(tmp_path, tmp_path / "run")


def test_dense_export_still_writes_both_files(cli, smoke_checkpoint, tmp_path):
    out = tmp_path / "d" / "model.safetensors"
    result = _export(cli, smoke_checkpoint, tmp_path, f"output={out}")
    assert result.exit_code == 0, (result.stderr, result.exception)
    assert sorted(p.name for p in out.parent.iterdir()) == ["model.json", "model.safetensors"]
    assert json.loads((tmp_path / "run" / "export.json").read_text())["bytes"] == out.stat().st_size


def test_compact_export_of_a_channel_run_is_evaluated_as_compact(cli, prune_run, tmp_path):
    run, summary = prune_run("pruner=l1_norm", "sparsity=0.5", "trainer.max_steps=2")
    out = tmp_path / "c" / "model.safetensors"
    exported = cli("export", f"checkpoint={run}", "format=compact", f"output={out}",
                   f"hydra.run.dir={tmp_path / 'x'}")
    assert exported.exit_code == 0, (exported.stderr, exported.exception)
    spec = json.loads(out.with_suffix(".json").read_text())
    assert spec["params_dense"] == summary["params_total"] > spec["params_compact"]
    result = cli("evaluate", f"checkpoint={out}", "latency.repeats=2", f"hydra.run.dir={tmp_path / 'e'}")
    assert result.exit_code == 0, (result.stderr, result.exception)
    report = json.loads((tmp_path / "e" / "evaluate.json").read_text())
    assert report["compact"] is True and report["sparsity"] is None
    assert report["params_total"] == spec["params_compact"] and report["params_dense"] == spec["params_dense"]
    assert report["params_ratio"] == pytest.approx(spec["params_compact"] / spec["params_dense"])
    assert "compact" in result.stdout and f"{spec['params_dense']:,}" in result.stdout
