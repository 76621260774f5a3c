"""Crafted files for the security tests: an honest checkpoint or compact export copied, one JSON field replaced.

The payloads are live: ``hydra.utils.instantiate`` runs them (see test_opt_ins.py, which loads one with
``trust_checkpoint_code=true`` and finds the marker file written), so a test that finds no marker after a
default load shows the load refused them.
"""

from __future__ import annotations

import hashlib
import io
import json
import pathlib
import pickle
import shutil
from pathlib import Path
from typing import Any

CALLS: list[dict[str, Any]] = []
DELETE = object()   # edit_json(path, key, DELETE) removes the key


def build_cnn(**kwargs: Any) -> Any:
    """A harmless custom ``_target_``: prunecli's own cnn builder, recording that it ran."""
    from prunecli.models import build_model

    CALLS.append(kwargs)
    return build_model(**kwargs)


class _Touch:
    """Unpickling this touches ``path`` (what a real payload would do with ``os.system``)."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self) -> Any:
        return (pathlib.Path.touch, (pathlib.Path(self.path),))


def write_text_payload(marker: Path) -> dict[str, Any]:
    """A config node whose instantiation writes ``marker`` (``pathlib.Path.write_text``)."""
    return {"_target_": "pathlib.Path.write_text", "self": {"_target_": "pathlib.Path", "_args_": [str(marker)]},
            "data": "owned"}


def pickle_payload(marker: Path) -> dict[str, Any]:
    """A config node whose instantiation unpickles bytes that touch ``marker`` (``numpy.load(allow_pickle)``)."""
    blob = pickle.dumps(_Touch(marker)).hex()
    return {"_target_": "numpy.load", "allow_pickle": True,
            "file": {"_target_": "io.BytesIO", "_args_": [{"_target_": "builtins.bytes.fromhex", "_args_": [blob]}]}}


def copy_dir(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def set_key(doc: Any, dotted: str, value: Any) -> None:
    """``doc[a][b][i] = value`` for ``dotted`` = ``a.b.i`` (integer parts index lists)."""
    *parents, last = dotted.split(".")
    for part in parents:
        doc = doc[int(part)] if isinstance(doc, list) else doc[part]
    key = int(last) if isinstance(doc, list) else last
    if value is DELETE:
        del doc[key]
    else:
        doc[key] = value


def edit_json(path: Path, dotted: str, value: Any) -> None:
    """Set ``dotted`` in the JSON file at ``path`` (the top level when ``dotted`` is empty)."""
    doc = json.loads(path.read_text())
    if dotted:
        set_key(doc, dotted, value)
    else:
        doc = value
    path.write_text(json.dumps(doc))


def rehash_weights(spec: Path, data: bytes, name: str | None = None) -> Path:
    """Write ``data`` as the compact export's weights (under ``name``) and record its SHA-256 in the spec."""
    doc = json.loads(spec.read_text())
    target = spec.parent / (name or doc["weights"])
    target.write_bytes(data)
    doc["sha256"] = hashlib.sha256(data).hexdigest()
    if name is not None:
        doc["weights"] = name
    spec.write_text(json.dumps(doc))
    return target


def npy_bytes() -> bytes:
    """A small numpy file: not safetensors."""
    import numpy as np

    buffer = io.BytesIO()
    np.save(buffer, np.arange(4))
    return buffer.getvalue()


def check_evaluate_refuses(cli: Any, path: Path, tmp_path: Path, match: str) -> None:
    """``prunecli evaluate`` of the export at ``path`` exits 2 with one ``error:`` line matching ``match``,
    no traceback and no evaluate.json."""
    import re

    result = cli("evaluate", f"checkpoint={path.with_suffix('.json')}", f"hydra.run.dir={tmp_path / 'out'}")
    assert result.exit_code == 2, (result.stdout, result.stderr, result.exception)
    errors = [line for line in result.error_lines if line.startswith("error:")]
    assert len(errors) == 1 and re.search(match, errors[0]), result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "out" / "evaluate.json").exists()
