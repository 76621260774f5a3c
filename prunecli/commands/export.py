"""``prunecli export``: write a checkpoint as dense, compact, semi-structured or sparse safetensors, or ONNX (see
:mod:`prunecli.export`)."""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import Any

from prunecli._atomic import file_kind
from prunecli.commands._common import require, run_dir, task
from prunecli.errors import ConfigError

log = logging.getLogger("prunecli")


@task
def export(cfg: Any) -> dict[str, Any]:
    """Export ``cfg.checkpoint`` as ``cfg.format`` to ``cfg.output``; writes ``export.json`` in the run dir."""
    from prunecli import export as exporters
    from prunecli._atomic import write_json
    from prunecli.checkpoint import load_checkpoint
    from prunecli.commands.evaluate import model_options
    from prunecli.engine.setup import plain

    fmt = str(cfg.format)
    module = exporters.format_module(fmt)
    options = module.check_options(plain(cfg.get(fmt)) or {})
    path = require(cfg, "checkpoint", "a checkpoint dir (.../checkpoint/last) or a prune run dir")
    output = writable_output(cfg.get("output"), run_dir() / f"model{module.SUFFIX}")
    ckpt = load_checkpoint(path)
    try:
        result = exporters.export(ckpt, fmt, output, options, **model_options(cfg))
    except OSError as err:   # ENOSPC, EIO, a device put in place meanwhile: nothing was renamed into place
        raise ConfigError("output", str(err.filename or output), "a path the export can be written to",
                          reason=err.strerror or str(err)) from None
    write_json(run_dir() / "export.json", result)
    line = f"wrote {result['output']} ({fmt})"
    if "max_abs_diff" in result:
        compared = "onnxruntime vs PyTorch" if fmt == "onnx" else f"{fmt} vs masked model"
        line += f"; {compared} max abs difference {result['max_abs_diff']:.3g}"
        if "output_scale" in result:  # compact: judged relative to the outputs' scale
            line += f" at output scale {result['output_scale']:.3g} (relative {result['max_rel_diff']:.3g})"
    if "ratio" in result:  # sparse
        line += f"; {result['bytes']:,} bytes, {result['ratio']:.3f}x the dense state's {result['bytes_dense']:,}"
    if "packed" in result:  # semi_structured
        line += f"; {len(result['packed'])} 2:4 layers packed, {len(result['dense'])} left dense"
    print(line)
    return result


def writable_output(value: Any, default: Path) -> Path:
    """``output=`` as a regular-file path in a directory that exists (created if needed) and takes new files.

    Writing is tried (a temp file, removed at once): ``os.access`` says yes to root even on ``/proc``.
    """
    path = Path(os.path.expanduser(str(value))) if value is not None else default
    shown = str(value) if value is not None else str(path)
    if kind := file_kind(path):
        raise ConfigError("output", shown, "a regular file path", reason=f"{path} is a {kind}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path.parent, prefix=f".{path.name}."):
            pass
    except OSError as err:
        raise ConfigError("output", shown, "a path in a writable directory", reason=err.strerror) from None
    return path
