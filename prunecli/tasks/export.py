"""``prunecli export``: write a checkpoint as dense safetensors or ONNX (see :mod:`prunecli.export`)."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from prunecli.errors import ConfigError
from prunecli.tasks._common import require, run_dir, task

log = logging.getLogger("prunecli")


@task
def export(cfg: Any) -> dict[str, Any]:
    """Export ``cfg.checkpoint`` as ``cfg.format`` to ``cfg.output``; writes ``export.json`` in the run dir."""
    from prunecli import export as exporters
    from prunecli._atomic import write_json
    from prunecli.checkpoint import load_checkpoint
    from prunecli.engine.setup import plain
    from prunecli.tasks.evaluate import model_options

    fmt = str(cfg.format)
    module = exporters.format_module(fmt)
    ckpt = load_checkpoint(require(cfg, "checkpoint", "a checkpoint dir (.../checkpoint/last) or a prune run dir"))
    output = writable_output(cfg.get("output"), run_dir() / f"model{module.SUFFIX}")
    result = exporters.export(ckpt, fmt, output, plain(cfg.get(fmt)) or {}, **model_options(cfg))
    write_json(run_dir() / "export.json", result)
    line = f"wrote {result['output']} ({fmt})"
    if "max_abs_diff" in result:
        compared = "onnxruntime vs PyTorch" if fmt == "onnx" else f"{fmt} vs masked model"
        line += f"; {compared} max abs difference {result['max_abs_diff']:.3g}"
    print(line)
    if result.get("match") is False:
        log.error("error: ONNX outputs differ from PyTorch by %.3g > atol %.3g", result["max_abs_diff"], result["atol"])
        raise SystemExit(1)
    return result


def writable_output(value: Any, default: Path) -> Path:
    """``output=`` as a path whose directory exists (created if needed) and is writable."""
    path = Path(os.path.expanduser(str(value))) if value is not None else default
    if path.is_dir():
        raise ConfigError("output", str(value), "a file path, not a directory")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError("output", str(value), "a path in a writable directory", reason=err.strerror) from None
    if not os.access(path.parent, os.W_OK):
        raise ConfigError("output", str(value), "a path in a writable directory")
    return path
