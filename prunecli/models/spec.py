"""Model and dataset specs read from files are data: registered builders and plain values, never code.

A checkpoint's ``meta.json`` and a compact export's JSON name their model (and dataset) by a config node such
as ``{"_target_": "prunecli.models.build_model", "_partial_": true, "name": "cnn", "channels": [32, 64]}``.
Loading such a node looks its ``_target_`` up in :data:`MODEL_BUILDERS` (or :data:`DATASET_BUILDERS`) and calls
that function with the node's other values; it never calls ``hydra.utils.instantiate`` on file data and never
puts it through OmegaConf, so a file cannot name code to run (a nested ``_target_``) or resolve an
interpolation (``${oc.env:HOME}``). Values must be null, booleans, numbers, strings or lists of those; anything
else is a :class:`CheckpointError` naming the key path.

A Hugging Face model's node holds its config, a nested mapping: :data:`ARG_CHECKERS` gives it its own bounded
checker (:mod:`prunecli.models.hf_spec`). A new kind of model that checkpoints should name is one more entry in
:data:`MODEL_BUILDERS`: the function takes the node's values plus the sizes of the spec's task
(:attr:`prunecli.tasks.Task.spec_fields`; image classification: ``in_channels``, ``num_classes``,
``image_size``) as keyword arguments and returns a freshly initialised module.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

from prunecli.data.factory import build_dataset
from prunecli.errors import CheckpointError
from prunecli.models.factory import build_model
from prunecli.models.hf import TARGET as HF_TARGET
from prunecli.models.hf import build_hf_model
from prunecli.models.hf_spec import check_hf_args
from prunecli.tasks import DEFAULT_TASK, get_task, list_tasks, task_of

MODEL_BUILDERS: dict[str, Callable[..., Any]] = {"prunecli.models.build_model": build_model, HF_TARGET: build_hf_model}
DATASET_BUILDERS: dict[str, Callable[..., Any]] = {"prunecli.data.build_dataset": build_dataset}
# A builder whose node holds more than plain values has its own bounded checker (a Hugging Face model's config
# is a nested mapping): ``checker(node, origin, key) -> keyword arguments``; every other node gets plain_args.
ARG_CHECKERS: dict[str, Callable[..., dict[str, Any]]] = {HF_TARGET: check_hf_args}

# How to build something else than a registered builder names, per kind (the refusal says both ways out).
_WAY_OUT = {
    "model": "rebuild it from your own config with model=<name> [model._target_=your.Model]",
    "dataset": "evaluate on your own dataset=<name>",
}
MAX_LIST = 4096      # elements of one list value (a list of layer widths, say)
MAX_STRING = 4096    # characters of one string value


@dataclass(frozen=True)
class Origin:
    """Where a spec came from, for one-line errors: ``label`` (``checkpoint``) and the ``file`` it was read from."""

    label: str
    file: str

    def error(self, key: str, text: str) -> CheckpointError:
        """``<label> <key> <text> (<file>)`` as a :class:`CheckpointError`."""
        return CheckpointError(f"{self.label} {key} {text} ({self.file})")


def check_spec(spec: Any, origin: Origin, key: str = "model") -> dict[str, Any]:
    """``spec`` (a model spec: ``config`` node, optional ``task`` name, and the task's sizes), checked.

    ``task`` must be a registered task's name (absent: ``image_classification``, as every spec before it was
    named); the task checks its sizes (image classification: ``in_channels``, ``num_classes``, ``image_size``
    positive and bounded); ``config`` must be a mapping (its values are checked when it is built). Returns
    ``spec`` itself.
    """
    if not isinstance(spec, dict):
        raise origin.error(key, f"is {_kind(spec)}: expected the model spec (config, in_channels, num_classes, "
                                "image_size)")
    name = spec.get("task", DEFAULT_TASK)
    if not isinstance(name, str) or name not in list_tasks():
        raise origin.error(f"{key}.task={short(name)}", f"is not allowed: expected one of {', '.join(list_tasks())}"
                           " (a task prunecli registers)")
    get_task(name).check_spec(spec, origin, key)
    if not isinstance(spec.get("config"), dict):
        raise origin.error(f"{key}.config", f"is {_kind(spec.get('config'))}: expected the model's config node")
    return spec


def sizes(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The sizes of a checked spec that its model builder takes (its task's ``spec_fields``)."""
    return {name: spec[name] for name in task_of(spec).spec_fields}


def plain_args(node: Any, origin: Origin, key: str) -> dict[str, Any]:
    """The node's values checked as plain data: str keys, values null/bool/number/string or lists of those.

    A mapping value (any nested ``_target_``) or a string holding ``${`` is refused, naming its key path.
    """
    if not isinstance(node, dict):
        raise origin.error(key, f"is {_kind(node)}: expected a config node (a mapping)")
    out = {}
    for name, value in node.items():
        path = f"{key}.{name}"
        if not isinstance(name, str) or not name.isidentifier() or (
                name.startswith("_") and name not in ("_target_", "_partial_")):
            raise origin.error(path, "is not a setting name a spec may hold")
        if isinstance(value, list):
            if len(value) > MAX_LIST:
                raise origin.error(path, f"is a list of {len(value)} values: at most {MAX_LIST}")
            out[name] = [_scalar(v, f"{path}[{i}]", origin) for i, v in enumerate(value)]
        else:
            out[name] = _scalar(value, path, origin)
    return out


# The most samples a file's dataset node may have made in memory (``fake``: 100k 3x32x32 images are 1.2 GB).
MAX_FILE_SAMPLES = 100_000


def builder(node: Any, kind: str, origin: Origin, key: str) -> tuple[Callable[..., Any], dict[str, Any]]:
    """``(registered function, its keyword arguments)`` for a ``kind`` (``model`` or ``dataset``) node."""
    registry = MODEL_BUILDERS if kind == "model" else DATASET_BUILDERS
    checker = ARG_CHECKERS.get(node.get("_target_")) if kind == "model" and isinstance(node, dict) else None
    args = (checker or plain_args)(node, origin, key)
    target = args.pop("_target_", None)
    partial = args.pop("_partial_", False)
    if not isinstance(partial, bool):
        raise origin.error(f"{key}._partial_={short(partial)}", "is not allowed: expected true or false")
    if target not in registry:
        raise origin.error(
            f"{key}._target_={short(target)}",
            f"is not a registered {kind} builder ({', '.join(registry)}), refused: {_WAY_OUT[kind]}, or, if you "
            "trust this file, pass trust_checkpoint_code=true (it instantiates every _target_ the file names)")
    samples = args.get("num_samples")
    if kind == "dataset" and isinstance(samples, int) and samples > MAX_FILE_SAMPLES:
        # synthetic data is made in memory from its size: a file may not ask for gigabytes (type dataset=... to)
        raise origin.error(f"{key}.num_samples={samples}", f"is more than a file may ask for ({MAX_FILE_SAMPLES}); "
                           "pass dataset=<name> with the size you want")
    return registry[target], args


def build(node: Any, kind: str, origin: Origin, key: str, **overrides: Any) -> Any:
    """Call the registered builder of ``node`` with its values and ``overrides``; its errors become one line."""
    fn, args = builder(node, kind, origin, key)
    try:
        return fn(**{**args, **overrides})
    except CheckpointError:
        raise
    except Exception as err:  # any builder's complaint about file-given values is the file's fault
        line = next((s.strip() for s in str(err).splitlines() if s.strip()), type(err).__name__)
        raise origin.error(key, f"does not build: {line}") from None


def _scalar(value: Any, path: str, origin: Origin) -> Any:
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, str):
        if "${" in value:
            raise origin.error(f"{path}={short(value)}", "is an interpolation, refused: a spec's strings are data")
        if len(value) > MAX_STRING:
            raise origin.error(path, f"is a string of {len(value)} characters: at most {MAX_STRING}")
        return value
    nested = " (a nested _target_ or config)" if isinstance(value, dict) else ""
    raise origin.error(path, f"is {_kind(value)}{nested}, refused: a spec holds only null, booleans, numbers, "
                             "strings and lists of them")


def _kind(value: Any) -> str:
    names = {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean", type(None): "missing or null"}
    return names.get(type(value), "a number" if isinstance(value, (int, float)) else type(value).__name__)


def short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
