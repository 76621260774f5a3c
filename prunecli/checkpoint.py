"""Checkpoints: a directory of safetensors files and a JSON sidecar; loading never unpickles.

Layout of a checkpoint directory (``<run dir>/checkpoint/last``, ``.../best``)::

    model.safetensors   model state dict (parameters and buffers), masks folded in
    masks.safetensors   bool masks keyed by parameter FQN (True = kept)
    state.safetensors   what a resume needs (optimizer, LR schedule, pruner, RNG, progress), flattened to
                        dotted tensor keys; the non-tensor rest is JSON in the file's metadata
    meta.json           format version, composed config, model spec, sparsity, metrics, versions, and the
                        SHA-256 of each safetensors file, checked on load

The directory is replaced atomically (see :mod:`prunecli._atomic`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional

import torch

from prunecli._atomic import recover_dir, replace_dir, write_bytes, write_json
from prunecli._flatten import flatten, unflatten
from prunecli.errors import CheckpointError

FORMAT = "prunecli-checkpoint"
VERSION = 1
FILES = ("model.safetensors", "masks.safetensors", "state.safetensors")


@dataclass
class Checkpoint:
    """A loaded checkpoint. ``state`` is the resume state (None unless loaded ``with_state=True``)."""

    path: Path
    meta: dict[str, Any]
    model_state: dict[str, torch.Tensor]
    masks: dict[str, torch.Tensor]
    state: Optional[dict[str, Any]] = field(default=None)

    @property
    def spec(self) -> dict[str, Any]:
        """What :func:`build_model` needs: the model config node plus in_channels, num_classes, image_size."""
        return self.meta["model"]


def fold_masks(state: Mapping[str, torch.Tensor], masks: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Model state with every masked parameter multiplied by its mask, as contiguous CPU tensors."""
    out = {}
    for key, value in state.items():
        value = value.detach()
        if key in masks:
            value = value * masks[key].to(value.device, value.dtype)
        out[key] = value.cpu().contiguous().clone()
    return out


def save_checkpoint(path: Path | str, *, model_state: Mapping[str, torch.Tensor],
                    masks: Mapping[str, torch.Tensor], meta: Mapping[str, Any],
                    state: Optional[Mapping[str, Any]] = None) -> Path:
    """Write a checkpoint directory atomically; returns its path.

    Args:
        path: The directory to (re)place.
        model_state: ``model.state_dict()``; masks are folded in here.
        masks: Bool masks keyed by parameter FQN.
        meta: JSON-able sidecar content (config, model spec, sparsity, metrics ...).
        state: Nested resume state whose leaves are tensors or JSON values.
    """
    from safetensors.torch import save

    path = Path(path)
    tensors, skeleton = flatten(dict(state or {}))
    blobs = {
        "model.safetensors": save(fold_masks(model_state, masks)),
        "masks.safetensors": save({k: m.detach().cpu().bool().contiguous() for k, m in masks.items()}),
        "state.safetensors": save(tensors, metadata={"skeleton": json.dumps(skeleton)}),
    }
    full_meta = {"format": FORMAT, "version": VERSION, **meta, "versions": _versions(),
                 "files": {name: hashlib.sha256(data).hexdigest() for name, data in blobs.items()}}

    def fill(tmp: Path) -> None:
        for name, data in blobs.items():
            write_bytes(tmp / name, data)
        write_json(tmp / "meta.json", full_meta)

    replace_dir(path, fill)
    return path


def resolve_checkpoint_path(path: Path | str, key: str = "checkpoint") -> Path:
    """A checkpoint directory from what users pass (as ``key=``): the directory itself, or a prune run dir."""
    p = recover_dir(Path(path).expanduser())
    if (p / "meta.json").is_file():
        return p
    for candidate in (p / "checkpoint" / "last", p / "last"):
        candidate = recover_dir(candidate)
        if (candidate / "meta.json").is_file():
            return candidate
    if not p.exists():
        raise CheckpointError(f"{key}={str(path)!r} does not exist: expected a checkpoint dir or a prune run dir")
    raise CheckpointError(f"{key}={str(path)!r} is not a checkpoint: no meta.json in it or in checkpoint/last")


def load_checkpoint(path: Path | str, *, with_state: bool = False, key: str = "checkpoint") -> Checkpoint:
    """Load and verify a checkpoint (SHA-256 of every file); any damage raises :class:`CheckpointError`.

    ``key`` names the setting the path came from, for error messages (``checkpoint``, ``trainer.resume``).
    """
    from safetensors.torch import load

    path = resolve_checkpoint_path(path, key)
    meta = _read_meta(path)
    loaded: dict[str, dict[str, torch.Tensor]] = {}
    skeleton: Any = {}
    for name in FILES if with_state else FILES[:2]:
        data = _read_verified(path, name, meta)
        try:
            loaded[name] = load(data)
            if name == "state.safetensors":
                skeleton = json.loads(_safetensors_metadata(data).get("skeleton", "{}"))
        except Exception as err:  # safetensors raises several types for a malformed file
            raise CheckpointError(f"{path / name} is corrupt: {err}") from None
    state = unflatten(skeleton, loaded["state.safetensors"]) if with_state else None
    return Checkpoint(path, meta, loaded["model.safetensors"], loaded["masks.safetensors"], state)


def build_model(checkpoint: Checkpoint) -> torch.nn.Module:
    """Rebuild the checkpoint's model from its spec and load its weights (masks already folded in)."""
    model = model_from_spec(checkpoint.spec)
    try:
        model.load_state_dict(checkpoint.model_state)
    except RuntimeError as err:
        first = str(err).splitlines()[0]
        raise CheckpointError(f"{checkpoint.path}: weights do not fit the model in its meta.json: {first}") from None
    return model


def model_from_spec(spec: Mapping[str, Any]) -> torch.nn.Module:
    """The dense model a spec describes (its config node plus in_channels, num_classes, image_size), with
    freshly initialised weights."""
    from prunecli._instantiate import build

    node = dict(spec["config"])
    if "weights" in node:
        node["weights"] = None  # the caller loads the weights; the original file may be elsewhere
    return build(node, "model", in_channels=spec["in_channels"], num_classes=spec["num_classes"],
                 image_size=spec["image_size"])


def _read_meta(path: Path) -> dict[str, Any]:
    try:
        meta = json.loads((path / "meta.json").read_text())
    except (OSError, ValueError) as err:
        raise CheckpointError(f"{path / 'meta.json'} is unreadable: {err}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or not isinstance(meta.get("files"), dict):
        raise CheckpointError(f"{path / 'meta.json'} is not a {FORMAT} sidecar")
    if meta.get("version", 0) > VERSION:
        raise CheckpointError(f"{path} has format version {meta['version']}; this prunecli reads up to {VERSION}")
    return meta


def _read_verified(path: Path, name: str, meta: Mapping[str, Any]) -> bytes:
    try:
        data = (path / name).read_bytes()
    except OSError:
        raise CheckpointError(f"{path / name} is missing") from None
    expected = meta["files"].get(name)
    if hashlib.sha256(data).hexdigest() != expected:
        raise CheckpointError(f"{path / name} is corrupt or was modified: its SHA-256 differs from meta.json")
    return data


def _safetensors_metadata(data: bytes) -> dict[str, str]:
    header_len = int.from_bytes(data[:8], "little")
    return json.loads(data[8 : 8 + header_len]).get("__metadata__", {}) or {}


def _versions() -> dict[str, str]:
    import prunecli

    return {"prunecli": prunecli.__version__, "torch": torch.__version__}
