"""A Hugging Face model node read from a file, checked as data before :func:`build_hf_model` sees it.

A checkpoint's ``meta.json`` (and an export's spec) records a ``transformers`` model as
``{"_target_": "prunecli.models.build_hf_model", "_partial_": true, "name": "hf", "head": "auto",
"class_name": "LlamaForCausalLM", "config": {...its config.json...}, "path": null, "weights": null}``
(:func:`prunecli.models.hf.recorded_node`). Its ``config`` is a nested mapping, which
:func:`prunecli.models.spec.plain_args` refuses for every other node, so this module checks it instead:

- the node's own keys are exactly those above, their values plain (``plain_args``); ``path`` must be null (a
  file never makes prunecli read a directory it names: the weights are the file's own);
- ``class_name`` is a bare name that ``transformers`` exports as a ``PreTrainedModel`` subclass whose config
  class is the config's ``model_type`` (a dotted name such as ``os.system`` is never looked up);
- ``config`` is plain JSON (null, booleans, finite numbers, strings, lists, string-keyed mappings), at most
  :data:`MAX_DEPTH` deep and :data:`MAX_VALUES` values, with no ``auto_map`` or ``trust_remote_code`` key (remote
  code) and no Hydra key (``_target_`` ...) at any depth, and layer counts at most :data:`MAX_LAYERS`.

Sizes that would allocate too much (a vocabulary of 4e9) are left to the meta-device build that every load does
first (:func:`prunecli.checkpoint.fit_model`); the model is built with ``trust_remote_code`` never set.
"""

from __future__ import annotations

import math
from typing import Any

NODE_KEYS = ("_target_", "_partial_", "name", "head", "class_name", "config", "path", "weights")
REFUSED_KEYS = {"auto_map": "remote code", "trust_remote_code": "remote code", "_target_": "a Hydra key",
                "_partial_": "a Hydra key", "_args_": "a Hydra key", "_recursive_": "a Hydra key",
                "_convert_": "a Hydra key"}
MAX_DEPTH = 6          # config.json nests text_config / rope_parameters a level or two deep
MAX_VALUES = 100_000   # every value and key, all levels (id2label of 1000 ImageNet classes is 2000)
MAX_KEY = 256          # characters of one key
MAX_LAYERS = 4096      # as MAX_LIST: each layer is Python objects built before any element count
MAX_INT = 2**53
LAYER_KEYS = {"num_hidden_layers", "n_layer", "n_layers", "num_layers", "encoder_layers", "decoder_layers",
              "num_encoder_layers", "num_decoder_layers"}


def check_hf_args(node: Any, origin: Any, key: str) -> dict[str, Any]:
    """The keyword arguments of a file's Hugging Face model node, checked (see the module docstring)."""
    from prunecli.models.spec import plain_args, short

    if not isinstance(node, dict):
        return plain_args(node, origin, key)  # refuses it, naming what it is
    for name in node:
        if name not in NODE_KEYS:
            shown = name if isinstance(name, str) and name.isidentifier() and len(name) <= 60 else short(name)
            raise origin.error(f"{key}.{shown}", f"is not a setting of a Hugging Face model node "
                                                        f"({', '.join(NODE_KEYS)})")
    args = plain_args({k: v for k, v in node.items() if k != "config"}, origin, key)
    if args.get("path") is not None:
        raise origin.error(f"{key}.path={short(args['path'])}", "is refused: a file's Hugging Face model is "
                           "rebuilt from its class_name and config, never loaded from a directory it names")
    config = node.get("config")
    if config is not None and not isinstance(config, dict):
        raise origin.error(f"{key}.config", "is not a mapping: a file holds the model's config itself")
    if config is not None:
        args["config"] = config
        _check_json(config, origin, f"{key}.config", 0, [0])
    if args.get("class_name") is not None:
        _check_class(args["class_name"], config, origin, key)
    return args


def _check_class(name: Any, config: Any, origin: Any, key: str) -> None:
    from prunecli.models.hf import model_class, require_transformers
    from prunecli.models.spec import short

    cls = model_class(require_transformers(), name)
    if cls is None:
        raise origin.error(f"{key}.class_name={short(name)}", "is not a transformers model class (a "
                           "PreTrainedModel subclass the transformers module exports), refused")
    model_type = (config or {}).get("model_type")
    if getattr(cls.config_class, "model_type", None) != model_type:
        raise origin.error(f"{key}.config.model_type={short(model_type)}", f"is not the model type of {name}")


def _check_json(value: Any, origin: Any, path: str, depth: int, count: list[int]) -> None:
    """``value`` is bounded plain JSON (``count[0]`` counts values across the whole walk)."""
    from prunecli.models.spec import MAX_LIST, MAX_STRING, short

    count[0] += 1
    if count[0] > MAX_VALUES:
        raise origin.error(path, f"is past {MAX_VALUES} values in all: a model config is not this large")
    if value is None or isinstance(value, bool):
        return
    if isinstance(value, int):
        if abs(value) > MAX_INT:
            raise origin.error(f"{path}={short(value)}", "is not allowed: expected an integer within 2**53")
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise origin.error(f"{path}={value}", "is not allowed: expected a finite number")
        return
    if isinstance(value, str):
        if "${" in value:
            raise origin.error(f"{path}={short(value)}", "is an interpolation, refused: a spec's strings are data")
        if len(value) > MAX_STRING:
            raise origin.error(path, f"is a string of {len(value)} characters: at most {MAX_STRING}")
        return
    if depth >= MAX_DEPTH:
        raise origin.error(path, f"is nested deeper than {MAX_DEPTH} levels: a model config is not")
    if isinstance(value, list):
        if len(value) > MAX_LIST:
            raise origin.error(path, f"is a list of {len(value)} values: at most {MAX_LIST}")
        for i, item in enumerate(value):
            _check_json(item, origin, f"{path}[{i}]", depth + 1, count)
        return
    if isinstance(value, dict):
        for name, item in value.items():
            _check_entry(name, item, origin, path)
            _check_json(item, origin, f"{path}.{name}", depth + 1, count)
        return
    raise origin.error(path, f"is a {type(value).__name__}, refused: a config holds only JSON values")


def _check_entry(name: Any, item: Any, origin: Any, path: str) -> None:
    """A config key: a short string, not one that asks for remote code or Hydra; layer counts bounded."""
    from prunecli.models.spec import short

    if not isinstance(name, str) or len(name) > MAX_KEY:
        raise origin.error(f"{path}.{short(name)}", "is not a config key (a string of at most 256 characters)")
    if name in REFUSED_KEYS:
        raise origin.error(f"{path}.{name}", f"is refused ({REFUSED_KEYS[name]}): prunecli never runs code a "
                                             "file names, and never sets trust_remote_code")
    if name in LAYER_KEYS and isinstance(item, int) and not isinstance(item, bool) and item > MAX_LAYERS:
        raise origin.error(f"{path}.{name}={item}", f"is not allowed: expected at most {MAX_LAYERS} layers")
