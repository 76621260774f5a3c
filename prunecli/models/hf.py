"""Hugging Face ``transformers`` models: ``model=hf`` loads a local model directory or builds one from a config.

    prunecli prune model=hf model.path=./my-gpt2 dataset=...                     # weights from the directory
    prunecli prune model=hf +model.config.model_type=llama +model.config.hidden_size=32 dataset=stdlib_text

The task decides the head (``model.head=auto``): a task with ``num_classes`` (text classification) gets
``AutoModelForSequenceClassification`` with that many labels, a language-modelling task ``AutoModelForCausalLM``;
``masked_lm`` and ``base`` (the plain encoder) are there for library use without a task. Nothing is ever
downloaded and no repository code runs: directories load with ``local_files_only=True`` and
``trust_remote_code=False``; a hub id loads only when it is already in the local cache.

A checkpoint records the built model's class name and config dict (:func:`recorded_node`), not the directory,
so ``prunecli evaluate``/``export`` rebuild it from the checkpoint alone; :mod:`prunecli.models.hf_spec` checks
such a node read from a file. ``transformers`` is imported only when a Hugging Face model is built.
"""

from __future__ import annotations

import difflib
import json
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any, Optional

from torch import nn

from prunecli.errors import ConfigError
from prunecli.models.weights import load_weights

TARGET = "prunecli.models.build_hf_model"
# model.head: the transformers auto class that builds each head.
HEADS = {"causal_lm": "AutoModelForCausalLM", "sequence_classification": "AutoModelForSequenceClassification",
         "masked_lm": "AutoModelForMaskedLM", "base": "AutoModel"}
CLASS_NAME = re.compile(r"[A-Z][A-Za-z0-9]*\Z")


def build_hf_model(
    *,
    path: Optional[str] = None,
    config: Any = None,
    head: str = "auto",
    class_name: Optional[str] = None,
    weights: Optional[str] = None,
    name: str = "hf",
    vocab_size: Optional[int] = None,
    seq_len: Optional[int] = None,
    num_classes: Optional[int] = None,
) -> nn.Module:
    """A ``transformers`` model from a local directory (``path``) or a config (``config``), in training mode.

    Args:
        path: A local model directory (``save_pretrained``'s: config.json and weights), or the id of a model
            already in the Hugging Face cache. Its weights are loaded.
        config: Instead of ``path``: a config.json path or a mapping with ``model_type`` plus sizes (freshly
            initialised weights; ``vocab_size`` defaults to the task's).
        head: ``auto`` (the task's), ``causal_lm``, ``sequence_classification``, ``masked_lm`` or ``base``.
        class_name: A transformers model class (``LlamaForCausalLM``) to build from ``config`` instead of the
            head's auto class (what checkpoints record).
        weights: Optional ``.safetensors`` or state-dict file to load after building.
        name: The config node's name (``hf``).
        vocab_size: The task's token id range: the model's vocabulary must cover it.
        seq_len: The task's sequence length: at most the model's ``max_position_embeddings``.
        num_classes: A classification task's classes (the number of labels of the head).

    Raises:
        ConfigError: transformers missing, neither or both of path and config, a directory that is not a model,
            a hub id not in the cache, a head the task or the model type does not have, sizes that do not fit.
    """
    transformers = require_transformers()
    head = resolve_head(head, vocab_size, num_classes)
    if path is not None and (config is not None or class_name is not None):
        raise ConfigError("model.config", "(given)", "null when model.path is given",
                          reason="the directory's own config.json describes the model")
    if path is not None:
        directory = model_directory(str(path))
        hf_config = _config_of_directory(transformers, directory, str(path))
        _check_fits(hf_config, "model.path", str(path), vocab_size, seq_len)
        model = _load_directory(transformers, directory, str(path), head, hf_config, num_classes)
    elif config is not None:
        hf_config = _config_of_mapping(transformers, read_config(config), vocab_size, num_classes)
        _check_fits(hf_config, "model.config", hf_config.model_type, vocab_size, seq_len)
        model = _from_config(transformers, hf_config, head, class_name)
    else:
        raise ConfigError("model.path", None, "a local model directory, or model.config (a config.json path or a "
                          "mapping with model_type, e.g. model.config={model_type: llama, hidden_size: 64})")
    if weights is not None:
        load_weights(model, weights)
    return model.train()


def require_transformers() -> ModuleType:
    """The ``transformers`` module, or a :class:`ConfigError` saying how to install it."""
    try:
        import transformers
    except ImportError:
        raise ConfigError("model", "hf", "a model whose library is installed",
                          reason="Hugging Face models need transformers: pip install 'prunecli[hf]'") from None
    return transformers


def resolve_head(head: str, vocab_size: Optional[int], num_classes: Optional[int]) -> str:
    """``head`` checked against the task (``num_classes``: classification; ``vocab_size`` alone: language model)."""
    if head != "auto" and head not in HEADS:
        raise ConfigError("model.head", head, ["auto", *HEADS])
    task, wanted = (("text_classification", "sequence_classification") if num_classes is not None else
                    ("causal_lm", "causal_lm") if vocab_size is not None else (None, None))
    if head == "auto":
        return wanted or "causal_lm"
    if wanted is not None and head != wanted:
        raise ConfigError("model.head", head, f"auto or {wanted} for the {task} task",
                          reason=f"a {head} model does not produce what {task} scores")
    return head


def is_hf_model(model: nn.Module) -> bool:
    """Whether ``model`` is a ``transformers`` model (never imports transformers to find out)."""
    transformers = sys.modules.get("transformers")
    return transformers is not None and isinstance(model, transformers.PreTrainedModel)


def recorded_node(node: Mapping[str, Any], model: nn.Module) -> dict[str, Any]:
    """The model node a checkpoint records: ``node`` itself, or, for a ``transformers`` model (however it was
    built), a :func:`build_hf_model` node holding its class name and full config, without path or weights."""
    if not is_hf_model(model):
        return dict(node)
    ours = node.get("_target_") == TARGET
    return {"_target_": TARGET, "_partial_": True, "name": node.get("name", "hf") if ours else "hf",
            "head": node.get("head", "auto") if ours else "auto", "class_name": type(model).__name__,
            "config": json.loads(model.config.to_json_string(use_diff=False)), "path": None, "weights": None}


def model_class(transformers: ModuleType, name: Any) -> Optional[type]:
    """The ``transformers`` model class called ``name`` (a PreTrainedModel subclass it exports), else None.

    Only a bare class name is looked up, and only as an attribute of the ``transformers`` module."""
    if not isinstance(name, str) or not CLASS_NAME.match(name):
        return None
    try:
        obj = getattr(transformers, name)
    except Exception:  # a lazy attribute whose module cannot import (a missing optional dependency) is no class
        return None
    base = transformers.PreTrainedModel
    return obj if isinstance(obj, type) and issubclass(obj, base) and obj is not base else None


def for_export(model: nn.Module) -> nn.Module:
    """``model`` with plain (eager) attention when it is a ``transformers`` model: the ONNX exporter traces its
    masks with dynamic shapes, and has no conversion of grouped-query SDPA."""
    if is_hf_model(model):
        model.set_attn_implementation("eager")
    return model


def model_directory(path: str) -> Path:
    """``path`` as a local model directory: itself, or a hub id's snapshot in the local cache (no download)."""
    directory = Path(path).expanduser()
    if not directory.exists():
        cached = _cached_snapshot(path)
        if cached is None:
            raise ConfigError("model.path", path, "a local model directory (save_pretrained's, with config.json)",
                              reason="no such directory, and no model of that id in the local Hugging Face cache: "
                                     "prunecli never downloads at run time; download it first (hf download <id>) "
                                     "and pass its directory")
        directory = cached
    if not (directory / "config.json").is_file():
        what = "a file" if directory.is_file() else "a directory without config.json"
        raise ConfigError("model.path", path, "a Hugging Face model directory (with config.json)",
                          reason=f"it is {what}")
    return directory


def read_config(config: Any) -> dict[str, Any]:
    """``model.config`` as a plain dict: a mapping (OmegaConf's too) or the path of a config.json file."""
    from omegaconf import OmegaConf

    if OmegaConf.is_config(config):
        config = OmegaConf.to_container(config, resolve=True)
    if isinstance(config, Mapping):
        return dict(config)
    file = Path(str(config)).expanduser()
    try:
        loaded = json.loads(file.read_text())
    except (OSError, ValueError, RecursionError) as err:
        raise ConfigError("model.config", str(config), "a config.json file or a mapping with model_type",
                          reason=str(err).splitlines()[0] if str(err) else type(err).__name__) from None
    if not isinstance(loaded, dict):
        raise ConfigError("model.config", str(config), "a config.json holding a mapping")
    return loaded


def _config_of_mapping(transformers: ModuleType, config: dict[str, Any], vocab_size: Optional[int],
                       num_classes: Optional[int]) -> Any:
    config = dict(config)
    model_type = config.pop("model_type", None)
    if "auto_map" in config or "trust_remote_code" in config:
        raise ConfigError("model.config.auto_map", "(given)", "a config without auto_map",
                          reason="prunecli never runs a model repository's own code")
    known = transformers.CONFIG_MAPPING
    if not isinstance(model_type, str) or model_type not in known:
        close = difflib.get_close_matches(str(model_type), list(known.keys()), n=3)
        raise ConfigError("model.config.model_type", model_type, "a model type transformers knows (llama, gpt2, "
                          "bert, ...)", reason=f"did you mean {' or '.join(close)}?" if close else None)
    if vocab_size is not None:
        config.setdefault("vocab_size", vocab_size)
    if num_classes is not None and "id2label" not in config:
        config.setdefault("num_labels", num_classes)
    try:
        hf_config = known[model_type].from_dict(config)
    except Exception as err:  # a config class rejects values in many ways (ValueError, TypeError, ...)
        raise ConfigError("model.config", model_type, "settings its transformers config accepts",
                          reason=_first_line(err)) from None
    if num_classes is not None and hf_config.num_labels != num_classes:
        raise ConfigError("model.config.num_labels", hf_config.num_labels, f"the dataset's {num_classes} classes")
    return hf_config


def _config_of_directory(transformers: ModuleType, directory: Path, shown: str) -> Any:
    try:
        return transformers.AutoConfig.from_pretrained(directory, local_files_only=True, trust_remote_code=False)
    except Exception as err:  # an unknown model_type, remote code, malformed JSON: one line each
        raise ConfigError("model.path", shown, "a model directory whose config.json transformers reads without "
                          "remote code", reason=_first_line(err)) from None


def _check_fits(hf_config: Any, key: str, shown: Any, vocab_size: Optional[int], seq_len: Optional[int]) -> None:
    """The model's vocabulary covers the task's token ids and its positions the task's sequence length."""
    vocab = getattr(hf_config, "vocab_size", None)
    if vocab_size is not None and isinstance(vocab, int) and vocab < vocab_size:
        raise ConfigError(key, shown, f"a model whose vocabulary covers the dataset's {vocab_size} token ids",
                          reason=f"its vocab_size is {vocab}; use the model's own tokenizer")
    positions = getattr(hf_config, "max_position_embeddings", None)
    if seq_len is not None and isinstance(positions, int) and positions < seq_len:
        raise ConfigError(key, shown, f"a model that takes the dataset's {seq_len} tokens per sequence",
                          reason=f"its max_position_embeddings is {positions}; shorten the dataset's sequences")


def _from_config(transformers: ModuleType, hf_config: Any, head: str, class_name: Optional[str]) -> nn.Module:
    if class_name is not None:
        cls = model_class(transformers, class_name)
        if cls is None or not isinstance(hf_config, cls.config_class):
            raise ConfigError("model.class_name", class_name,
                              f"a transformers model class for model_type {hf_config.model_type}")
        return cls(hf_config)
    auto = getattr(transformers, HEADS[head])
    try:
        return auto.from_config(hf_config, trust_remote_code=False)
    except ValueError:
        raise _no_head(head, hf_config.model_type) from None


def _load_directory(transformers: ModuleType, directory: Path, shown: str, head: str, hf_config: Any,
                    num_classes: Optional[int]) -> nn.Module:
    import torch

    extra: dict[str, Any] = {}
    if num_classes is not None and hf_config.num_labels != num_classes:  # a fresh head for the task's classes
        extra = {"num_labels": num_classes, "ignore_mismatched_sizes": True}
    auto = getattr(transformers, HEADS[head])
    try:
        return auto.from_pretrained(directory, local_files_only=True, trust_remote_code=False, dtype=torch.float32,
                                    **extra)
    except ValueError as err:
        if "Unrecognized configuration class" in str(err):
            raise _no_head(head, hf_config.model_type) from None
        raise ConfigError("model.path", shown, "a model directory transformers loads", reason=_first_line(err)) \
            from None
    except OSError as err:  # no weights file, unreadable files
        raise ConfigError("model.path", shown, "a model directory with its weights (model.safetensors)",
                          reason=_first_line(err)) from None


def _no_head(head: str, model_type: str) -> ConfigError:
    return ConfigError("model.head", head, f"a head transformers has for model_type {model_type}",
                       reason=f"there is no {HEADS[head]} class for {model_type}")


def _cached_snapshot(repo_id: str) -> Optional[Path]:
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo_id, local_files_only=True))
    except Exception:  # not an id (HFValidationError), not cached (LocalEntryNotFoundError), no huggingface_hub
        return None


def _first_line(err: Exception) -> str:
    return next((line.strip() for line in str(err).splitlines() if line.strip()), type(err).__name__)
