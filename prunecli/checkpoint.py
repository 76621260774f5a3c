"""Checkpoints: a directory of safetensors files and a JSON sidecar; loading never unpickles.

Layout of a checkpoint directory (``<run dir>/checkpoint/last``, ``.../best``)::

    model.safetensors   model state dict (parameters and buffers), masks folded in (pruned elements are +0.0)
    masks.safetensors   keep masks keyed by parameter FQN (True = kept), bit-packed: each a 1-D uint8 tensor of
                        ``ceil(numel / 8)`` bytes, 1 bit per element, row-major, lowest bit first
                        (:func:`prunecli._bits.pack`); the file's metadata has one key, ``masks``, a JSON
                        object ``{"layout": "bits", "shapes": {FQN: [sizes]}}`` (one key: safetensors writes
                        several in no fixed order, and a resumed run's files are compared byte for byte).
                        Version-1 checkpoints hold bool tensors and no ``masks`` metadata; both load as bool
                        masks (:func:`prunecli._masks_file.decode_masks`)
    state.safetensors   what a resume needs (optimizer, LR schedule, pruner, RNG, progress), flattened to
                        dotted tensor keys, bool tensors (the pruner's masks) bit-packed as in masks.safetensors;
                        the non-tensor rest, bit-packed shapes included, is JSON in the file's metadata
    meta.json           format version (2: bit-packed masks; 1: bool masks), composed config, model spec,
                        sparsity, metrics, versions, and the SHA-256 of each safetensors file, checked on load

A 7B-parameter model's bool masks take 7 GB; bit-packed, 0.9 GB.

The directory is replaced atomically (see :mod:`prunecli._atomic`).

A checkpoint is data, never code: its model and dataset nodes may name only builders registered in
:mod:`prunecli.models.spec` with plain values (:func:`load_model` takes your own ``model`` node or an explicit
``trust_checkpoint_code=True`` otherwise), and the model is built on the meta device and compared with the
weights' shapes before anything is allocated. The SHA-256s detect damaged or swapped files (integrity); they do
not prove who wrote the checkpoint, since whoever edits a file can re-hash it, and meta.json is not covered.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

import torch
from torch import nn

from prunecli._atomic import recover_dir, replace_dir, write_bytes, write_json
from prunecli._flatten import flatten, unflatten
from prunecli._masks_file import decode_masks, encode_masks, safetensors_header
from prunecli.errors import CheckpointError, ConfigError, first_line
from prunecli.models.meta import on_meta
from prunecli.models.spec import Origin, check_spec, short, sizes
from prunecli.models.spec import build as build_spec

FORMAT = "prunecli-checkpoint"
VERSION = 2  # 2: bit-packed masks (version-1 checkpoints, bool masks, still load)
FILES = ("model.safetensors", "masks.safetensors", "state.safetensors")
MAX_ELEMENTS = 20_000_000_000   # of a model rebuilt from a file, checked on the meta device before any allocation
MAX_ELEMENTS_ENV = "PRUNECLI_MAX_ELEMENTS"


@dataclass
class Checkpoint:
    """A loaded checkpoint. ``state`` is the resume state (None unless loaded ``with_state=True``)."""

    path: Path
    meta: dict[str, Any]
    model_state: dict[str, torch.Tensor]
    masks: dict[str, torch.Tensor]
    state: Optional[dict[str, Any]] = field(default=None)

    @property
    def origin(self) -> Origin:
        """Where the spec came from, for errors: ``meta.json`` of a checkpoint dir, or a compact export's JSON."""
        if self.path.suffix == ".json":
            return Origin("compact export", str(self.path))
        return Origin("checkpoint", str(self.path / "meta.json"))

    @property
    def spec(self) -> dict[str, Any]:
        """What :func:`load_model` needs: the model config node, the task's name (absent in checkpoints written
        before tasks: image classification) and the task's sizes (image classification: in_channels,
        num_classes, image_size), checked: a :class:`CheckpointError` when missing or out of bounds."""
        return check_spec(self.meta.get("model"), self.origin)


def fold_masks(state: Mapping[str, torch.Tensor], masks: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Model state with every masked parameter's pruned elements set to +0.0, as contiguous CPU tensors.

    ``masked_fill`` rather than a product with the mask: ``-w * 0`` is ``-0.0`` and ``inf * 0`` is NaN, so a
    product would hold bits the sparse export (which stores the kept values only) could not give back.
    """
    out = {}
    for key, value in state.items():
        value = value.detach()
        if key in masks:
            value = value.masked_fill(~masks[key].to(value.device, torch.bool), 0)
        out[key] = value.cpu().contiguous().clone()
    return out


def save_checkpoint(path: Path | str, *, model_state: Mapping[str, torch.Tensor],
                    masks: Mapping[str, torch.Tensor], meta: Mapping[str, Any],
                    state: Optional[Mapping[str, Any]] = None) -> Path:
    """Write a checkpoint directory atomically; returns its path.

    Args:
        path: The directory to (re)place.
        model_state: ``model.state_dict()``; masks are folded in here.
        masks: Bool masks keyed by parameter FQN; stored bit-packed.
        meta: JSON-able sidecar content (config, model spec, sparsity, metrics ...).
        state: Nested resume state whose leaves are tensors or JSON values.
    """
    from safetensors.torch import save

    path = Path(path)
    tensors, skeleton = flatten(dict(state or {}), pack_bools=True)
    blobs = {
        "model.safetensors": save(fold_masks(model_state, masks)),
        "masks.safetensors": encode_masks(masks),
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
    """Load a checkpoint, checking each file's SHA-256 against meta.json (integrity against damage, not
    authenticity); damage or a malformed meta.json raises :class:`CheckpointError`. Builds no model.

    ``key`` names the setting the path came from, for error messages (``checkpoint``, ``trainer.resume``).
    """
    from safetensors.torch import load

    path = resolve_checkpoint_path(path, key)
    meta = _read_meta(path)
    try:
        model_state = load(_read_verified(path, "model.safetensors", meta))
    except CheckpointError:
        raise
    except Exception as err:  # safetensors raises several types for a malformed file
        raise CheckpointError(f"{path / 'model.safetensors'} is corrupt: {err}") from None
    shapes = {k: tuple(v.shape) for k, v in model_state.items()}
    masks = decode_masks(_read_verified(path, "masks.safetensors", meta), path / "masks.safetensors", shapes)
    state = _read_state(path, meta) if with_state else None
    return Checkpoint(path, meta, model_state, masks, state)


def _read_state(path: Path, meta: Mapping[str, Any]) -> Any:
    """The nested resume state of state.safetensors (bit-packed bool tensors unpacked)."""
    from safetensors.torch import load

    name = path / "state.safetensors"
    data = _read_verified(path, "state.safetensors", meta)
    try:
        tensors = load(data)
        skeleton = json.loads((safetensors_header(data, name).get("__metadata__") or {}).get("skeleton", "{}"))
        return unflatten(skeleton, tensors)
    except CheckpointError:
        raise
    except Exception as err:  # safetensors, JSON and unflatten raise several types for a malformed file
        raise CheckpointError(f"{name} is corrupt: {first_line(err)}") from None


def load_model(checkpoint: Checkpoint, *, model: Any = None, trust_checkpoint_code: bool = False) -> nn.Module:
    """Rebuild the checkpoint's model from its spec and load its weights (masks already folded in).

    The spec's model node must name a builder registered in :mod:`prunecli.models.spec` with plain values,
    unless ``model`` (your own config node, built with its ``_target_``; sizes still from the spec) replaces it
    or ``trust_checkpoint_code`` lets the file's node be instantiated as it is (runs whatever it names). The
    weights' shapes are compared with a meta-device build first (see :func:`fit_model`).
    """
    origin = checkpoint.origin
    make = model_builder(checkpoint.spec, origin, model=model, trust_checkpoint_code=trust_checkpoint_code)
    shapes = {k: tuple(v.shape) for k, v in checkpoint.model_state.items()}
    for key, mask in checkpoint.masks.items():  # evaluate and export read the masks beside the weights
        if shapes.get(key) != tuple(mask.shape):
            raise origin.error("masks", f"hold {short(key)}, which is not a weight of that shape in the model")
    net = fit_model(make, shapes, origin)
    try:
        net.load_state_dict(checkpoint.model_state)
    except RuntimeError as err:
        raise origin.error("model", f"weights do not fit the model it names: {str(err).splitlines()[0]}") from None
    return net


def model_from_spec(spec: Mapping[str, Any], *, model: Any = None, trust_checkpoint_code: bool = False,
                    origin: Optional[Origin] = None) -> nn.Module:
    """The dense model a spec describes (its config node plus its task's sizes), with
    freshly initialised weights; ``model`` and ``trust_checkpoint_code`` as in :func:`load_model`."""
    origin = origin or Origin("model spec", "given in Python")
    return model_builder(spec, origin, model=model, trust_checkpoint_code=trust_checkpoint_code)()


def model_builder(spec: Any, origin: Origin, *, model: Any = None,
                  trust_checkpoint_code: bool = False) -> Callable[[], nn.Module]:
    """A function that builds the spec's model (see :func:`load_model`); the spec's sizes are checked now."""
    size = sizes(check_spec(spec, origin))
    if model is not None or trust_checkpoint_code:
        from prunecli._instantiate import build

        node = _without_weights(model if model is not None else spec["config"])
        return lambda: build(node, "model", **size)
    node = spec["config"]
    extra = {"weights": None} if "weights" in node else {}  # as in _without_weights
    return lambda: build_spec(node, "model", origin, "model.config", **size, **extra)


def _without_weights(node: Any) -> dict[str, Any]:
    """A plain copy of a model node, with its ``weights`` file (if any) dropped: the caller loads the weights."""
    from omegaconf import OmegaConf

    node = OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else dict(node)
    if "weights" in node:
        node["weights"] = None
    return node


def max_elements() -> int:
    """The most elements (parameters and buffers) a loaded model may have: ``$PRUNECLI_MAX_ELEMENTS`` or 20e9."""
    value = os.environ.get(MAX_ELEMENTS_ENV, str(MAX_ELEMENTS))
    if not value.isdigit() or int(value) < 1:
        raise ConfigError(MAX_ELEMENTS_ENV, value, "a positive integer (elements of a loadable model)")
    return int(value)


def fit_model(build: Callable[[], nn.Module], shapes: Mapping[str, Sequence[int]], origin: Origin,
              then: Optional[Callable[[nn.Module, torch.device], nn.Module]] = None) -> nn.Module:
    """Build the model for real only once a meta-device build fits the weights' ``shapes``.

    ``build()`` runs on the meta device first (no memory); the model's element count must be within
    :func:`max_elements`; ``then(model, device)`` (a compact export's removal plan) transforms it; its state
    dict must have exactly the keys and shapes of ``shapes`` (a safetensors header). Only then is it built on
    the CPU (and transformed). Loading the weights is the caller's.
    """
    with on_meta():
        probe = build()
    count = sum(t.numel() for t in probe.state_dict().values())
    if count > max_elements():
        raise origin.error("model", f"names a model of {count:,} elements, over the limit of {max_elements():,} "
                                    f"(${MAX_ELEMENTS_ENV})")
    meta = torch.device("meta")
    probe = then(probe.to(meta), meta) if then is not None else probe
    check_shapes(probe.state_dict(), shapes, origin)
    net = build()
    return then(net, torch.device("cpu")) if then is not None else net


def check_shapes(state: Mapping[str, torch.Tensor], shapes: Mapping[str, Sequence[int]], origin: Origin) -> None:
    """``state``'s keys and shapes equal ``shapes``'s, or a :class:`CheckpointError` naming the first difference."""
    missing, unexpected = sorted(set(state) - set(shapes)), sorted(set(shapes) - set(state))
    if missing or unexpected:
        first = f"{missing[0]!r} is missing from the weights" if missing else f"{unexpected[0]!r} is not in the model"
        raise origin.error("model", f"does not fit its weights: {first} ({len(missing)} missing, "
                                    f"{len(unexpected)} unexpected keys)")
    for key, tensor in state.items():
        if tuple(tensor.shape) != tuple(shapes[key]):
            raise origin.error("model", f"does not fit its weights: {key} is {list(shapes[key])} in the weights, "
                                        f"{list(tensor.shape)} in the model")


def read_json(path: Path) -> Any:
    """A JSON file's content; unreadable, malformed or absurdly nested JSON is a one-line CheckpointError."""
    try:
        return json.loads(path.read_text())
    except RecursionError:
        raise CheckpointError(f"{path} is unreadable: JSON nested too deeply") from None
    except (OSError, ValueError) as err:
        raise CheckpointError(f"{path} is unreadable: {str(err).splitlines()[0]}") from None


def check_version(value: Any, newest: int, origin: Origin) -> None:
    """A format version must be an integer from 1 to ``newest``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise origin.error(f"version={value!r}", "is not a format version (an integer from 1)")
    if value > newest:
        raise origin.error(f"version={value}", f"is newer than this prunecli reads (up to {newest})")


def _read_meta(path: Path) -> dict[str, Any]:
    """meta.json, checked: its fields have the types this module writes (``model`` and ``config`` may be absent
    from a sidecar written by :func:`save_checkpoint` directly; :attr:`Checkpoint.spec` needs ``model``)."""
    meta = read_json(path / "meta.json")
    origin = Origin("checkpoint", str(path / "meta.json"))
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or not isinstance(meta.get("files"), dict):
        raise CheckpointError(f"{path / 'meta.json'} is not a {FORMAT} sidecar")
    check_version(meta.get("version", 1), VERSION, origin)
    for key in ("model", "config"):
        if key in meta and not isinstance(meta[key], dict):
            raise origin.error(key, f"is a {type(meta[key]).__name__}: expected a mapping")
    return meta


def read_regular_file(path: Path) -> bytes:
    """The bytes of ``path``, which must be a regular file and no link (a link to ``/dev/zero``, a FIFO or a file
    outside the checkpoint's directory would be read without end or from elsewhere)."""
    import os
    import stat

    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_NONBLOCK", 0))
    except OSError as err:
        if path.is_symlink():
            raise CheckpointError(f"{path} is a link: checkpoint files must be regular files") from None
        raise CheckpointError(f"{path} is missing" if not path.exists() else f"{path} is unreadable: {err.strerror}") \
            from None
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise CheckpointError(f"{path} is not a regular file")
        return f.read()


def _read_verified(path: Path, name: str, meta: Mapping[str, Any]) -> bytes:
    data = read_regular_file(path / name)
    expected = meta["files"].get(name)
    # Integrity only: whoever can edit the files can re-hash them, and meta.json itself is not covered.
    if hashlib.sha256(data).hexdigest() != expected:
        raise CheckpointError(f"{path / name} is corrupt or was modified: its SHA-256 differs from meta.json")
    return data


def _versions() -> dict[str, str]:
    import prunecli

    return {"prunecli": prunecli.__version__, "torch": torch.__version__}
