"""Your own text: local ``.json``/``.jsonl``/``.csv``/``.parquet``/``.txt`` files, read with Hugging Face ``datasets``.

Without ``label_field`` the task is causal language modelling: with ``packing`` the tokenized texts, each followed
by the tokenizer's EOS (the byte tokenizer: a newline), are concatenated and cut into ``max_length`` blocks;
without it each text is one sample, cut or right-padded to ``max_length`` with an ``attention_mask`` (padding is
never scored). With ``label_field`` the task is text classification: each text is one sample (with the tokenizer's
special tokens, padded) and its label an int class id; string labels become ids in sorted order (or in the order
of ``classes``), and the run records that order so ``evaluate`` maps labels the same way.

Reading never touches the network (``local_files_only``, ``HF_HUB_OFFLINE``) and leaves no cache behind: datasets
writes its Arrow files into a temporary folder that is removed once the columns are read into memory.
"""

from __future__ import annotations

import glob
import os
import tempfile
from pathlib import Path
from typing import Any, Optional, Sequence

import torch

from prunecli._checks import integer
from prunecli.data._registry import register_dataset
from prunecli.data.bundle import DataBundle
from prunecli.data.text_encoding import INSTALL_HF, Encoder, TextTensors, load_encoder, pack, pad
from prunecli.errors import ConfigError

FORMATS = {".json": "json", ".jsonl": "json", ".csv": "csv", ".parquet": "parquet", ".txt": "text"}
TASKS = ("auto", "causal_lm", "text_classification")
MAX_LENGTH = 65_536


@register_dataset("text_files")
def text_files(*, train: Any = None, val: Any = None, format: str = "auto", text_field: str = "text",
               label_field: Optional[str] = None, task: str = "auto", max_length: int = 128,
               seq_len: Optional[int] = None, packing: bool = True, tokenizer: Optional[str] = None,
               classes: Optional[Sequence[Any]] = None, max_train_samples: Optional[int] = None,
               max_val_samples: Optional[int] = None, val_fraction: float = 0.2, seed: int = 0) -> DataBundle:
    """Train and validation samples of local text files (see the module).

    Args:
        train: A file, a glob (``data/*.jsonl``) or a list of them.
        val: The same for validation; None splits ``train``'s rows by ``val_fraction`` and ``seed``.
        format: ``auto`` (by extension), ``json`` (also JSON lines), ``csv``, ``parquet`` or ``text`` (a line
            per sample).
        text_field: The column holding the text (``text`` for plain text files).
        label_field: The column holding the class (int ids or strings); None: language modelling.
        task: ``auto`` (text_classification with a ``label_field``, else causal_lm), or one of them.
        max_length: Tokens per sample.
        seq_len: The model's length when rebuilding data for a checkpoint (``evaluate``); wins over max_length.
        packing: Causal LM: pack texts into full blocks (true) or one padded text per sample (false).
        tokenizer: A local Hugging Face tokenizer folder, or None for prunecli's byte tokenizer (256 ids).
        classes: String labels in class-id order; None: the train split's distinct labels, sorted.
        max_train_samples: Keep at most this many training samples (drawn by ``seed``, kept in order).
        max_val_samples: The same for validation.
        val_fraction: Fraction of ``train``'s rows held out when ``val`` is None.
        seed: Seed of that split and of the capped draws.

    Raises:
        ConfigError: a missing file, a bad setting or column, a tokenizer folder that is not one, an empty split,
            a label column with fewer than two classes, or ``datasets`` not installed.
    """
    length = integer("dataset.max_length", seq_len if seq_len is not None else max_length, 2, MAX_LENGTH)
    task = _task(task, label_field)
    for key, cap in (("dataset.max_train_samples", max_train_samples), ("dataset.max_val_samples", max_val_samples)):
        if cap is not None:
            integer(key, cap, 1)
    train_files = find_files("dataset.train", train)
    val_files = find_files("dataset.val", val) if val is not None else []
    fmt = file_format(format, train_files + val_files)
    encoder = load_encoder(tokenizer)
    generator = torch.Generator().manual_seed(seed)
    train_rows = read_rows("dataset.train", train_files, fmt, text_field, label_field)
    if val is None:
        train_rows, val_rows = split_rows(train_rows, val_fraction, generator)
    else:
        val_rows = read_rows("dataset.val", val_files, fmt, text_field, label_field)
    recorded: dict[str, Any] = {"train": _absolute(train), "val": _absolute(val) if val is not None else None}
    if tokenizer is not None:
        recorded["tokenizer"] = str(Path(str(tokenizer)).expanduser().resolve())
    labels, num_classes = {}, None
    if task == "text_classification":
        if label_field is None:
            raise ConfigError("dataset.label_field", None, "the column holding the classes",
                              reason="task text_classification needs labels")
        names = class_names(label_field, train_rows["labels"], classes)
        labels = {split: class_ids(label_field, rows["labels"], names, split)
                  for split, rows in (("train", train_rows), ("val", val_rows))}
        num_classes = len(names) if names is not None else 1 + max(max(ids) for ids in labels.values())
        if names is not None:
            recorded["classes"] = names
    splits = {}
    for split, rows, cap in (("train", train_rows, max_train_samples), ("val", val_rows, max_val_samples)):
        splits[split] = samples(rows["texts"], labels.get(split), task, encoder, length, packing, cap, generator)
        if len(splits[split]) == 0:
            raise ConfigError(f"dataset.{split}", train if split == "train" or val is None else val,
                              "files with text", reason=f"the {split} split has no sample of {length} tokens "
                              f"({len(rows['texts'])} texts)")
    return DataBundle(train=splits["train"], val=splits["val"], in_channels=None, num_classes=num_classes,
                      image_size=None, name="text_files", task=task, vocab_size=encoder.vocab_size,
                      seq_len=length, recorded=recorded)


def _task(task: Any, label_field: Optional[str]) -> str:
    if task not in TASKS:
        raise ConfigError("dataset.task", task, TASKS)
    if task == "auto":
        return "text_classification" if label_field is not None else "causal_lm"
    return task


def _absolute(patterns: Any) -> Any:
    """File patterns as absolute paths, so that a checkpoint's record reads the same files from any folder."""
    if isinstance(patterns, str):
        return os.path.abspath(os.path.expanduser(patterns))
    return [os.path.abspath(os.path.expanduser(str(p))) for p in patterns]


def find_files(key: str, patterns: Any) -> list[str]:
    """The files a pattern (a path or a glob) or a list of patterns names, sorted; each must match a file."""
    allowed = "a file, a glob or a list of them (.json, .jsonl, .csv, .parquet, .txt)"
    if isinstance(patterns, str):
        patterns = [patterns]
    if not patterns or not all(isinstance(p, str) and p for p in patterns):
        raise ConfigError(key, patterns, allowed)
    files = []
    for pattern in patterns:
        found = sorted(p for p in glob.glob(os.path.expanduser(pattern)) if os.path.isfile(p))
        if not found:
            raise ConfigError(key, pattern, allowed, reason="no such file")
        files += [os.path.abspath(p) for p in found]
    return files


def file_format(format: Any, files: Sequence[str]) -> str:
    """The ``datasets`` builder of the files: ``format``, or the one their extension names for ``auto``."""
    builders = sorted(set(FORMATS.values()))
    if format != "auto":
        if format not in builders:
            raise ConfigError("dataset.format", format, ["auto", *builders])
        return format
    found = {FORMATS.get(Path(f).suffix.lower()) for f in files}
    if None in found or len(found) != 1:
        odd = next((f for f in files if Path(f).suffix.lower() not in FORMATS), files[0])
        raise ConfigError("dataset.format", "auto", f"files of one kind, ending {', '.join(FORMATS)}, or "
                          f"format={'|'.join(builders)}", reason=f"{odd} among {len(files)} files")
    return found.pop()


def read_rows(key: str, files: list[str], fmt: str, text_field: str,
              label_field: Optional[str]) -> dict[str, list[Any]]:
    """``{"texts": [...], "labels": [...] or None}`` of the files, read by ``datasets.load_dataset``."""
    columns = load_columns(key, files, fmt)
    for field_key, name in (("dataset.text_field", text_field), ("dataset.label_field", label_field)):
        if name is not None and name not in columns:
            raise ConfigError(field_key, name, f"a column of {files[0]}: {', '.join(columns) or 'none'}")
    texts = columns[text_field]
    missing = next((i for i, t in enumerate(texts) if t is None), None)
    if missing is not None:
        raise ConfigError("dataset.text_field", text_field, "a column with a text in every row",
                          reason=f"row {missing} of {files[0] if len(files) == 1 else key} has none")
    return {"texts": [str(t) for t in texts], "labels": columns[label_field] if label_field else None}


def load_columns(key: str, files: list[str], fmt: str) -> dict[str, list[Any]]:
    """The files' columns as lists; the Arrow cache lives in a temporary folder that is removed afterwards."""
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")  # local files only: never a download
    try:
        import datasets
    except ImportError:
        raise ConfigError("dataset.name", "text_files", f"the Hugging Face datasets package ({INSTALL_HF})",
                          reason="it reads the files") from None
    from datasets.utils import logging as ds_logging

    bars = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    verbosity = ds_logging.get_verbosity()
    ds_logging.set_verbosity_error()
    try:
        with tempfile.TemporaryDirectory(prefix="prunecli-datasets-") as cache:
            table = datasets.load_dataset(fmt, data_files=files, split="train", cache_dir=cache, keep_in_memory=True,
                                          download_config=datasets.DownloadConfig(local_files_only=True))
            return table.to_dict()
    except Exception as err:  # a malformed file: datasets raises its own errors, arrow's, or json's
        line = next((s.strip() for s in str(err).splitlines() if s.strip()), type(err).__name__)
        raise ConfigError(key, files[0] if len(files) == 1 else files, f"{fmt} files datasets can read",
                          reason=line[:200]) from None
    finally:
        ds_logging.set_verbosity(verbosity)
        if bars:
            datasets.enable_progress_bars()


def split_rows(rows: dict[str, Any], val_fraction: float,
               generator: torch.Generator) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(train, val)``: ``round(n * val_fraction)`` rows (at least one) drawn by ``generator`` go to val; each
    part keeps the file order."""
    n = len(rows["texts"])
    held = set(torch.randperm(n, generator=generator)[: max(1, round(n * val_fraction))].tolist()) if n > 1 else set()

    def part(keep: Any) -> dict[str, Any]:
        pick = [i for i in range(n) if keep(i)]
        labels = rows["labels"]
        return {"texts": [rows["texts"][i] for i in pick], "labels": [labels[i] for i in pick] if labels else None}

    return part(lambda i: i not in held), part(lambda i: i in held)


def class_names(label_field: str, labels: list[Any], classes: Optional[Sequence[Any]]) -> Optional[list[str]]:
    """The class names in id order: ``classes``, or the distinct string labels sorted; None for int labels
    (they are the class ids themselves). Fewer than two classes is an error."""
    if classes is not None:
        if isinstance(classes, str) or len(set(map(str, classes))) != len(classes):
            raise ConfigError("dataset.classes", classes, "a list of distinct class names, or null")
        names = [str(c) for c in classes]
    elif all(isinstance(v, int) and not isinstance(v, bool) for v in labels):
        names = None
    else:
        names = sorted({str(v) for v in labels if v is not None})
    distinct = {str(v) for v in labels if v is not None}
    if len(names if names is not None else distinct) < 2 or len(distinct) < 2:
        raise ConfigError("dataset.label_field", label_field, "a column with at least two classes",
                          reason=f"the train split has {sorted(distinct)}")
    return names


def class_ids(label_field: str, labels: list[Any], names: Optional[list[str]], split: str) -> list[int]:
    """Each label's class id: its index in ``names``, or the int label itself (>= 0)."""
    index = {name: i for i, name in enumerate(names)} if names is not None else None
    out = []
    for row, value in enumerate(labels):
        known = value is not None and (str(value) in index if index is not None else
                                       isinstance(value, int) and not isinstance(value, bool) and value >= 0)
        if not known:
            allowed = f"labels among {names}" if names is not None else "int labels >= 0 (or strings)"
            raise ConfigError("dataset.label_field", label_field, allowed,
                              reason=f"row {row} of the {split} split has {value!r}")
        out.append(index[str(value)] if index is not None else int(value))
    return out


def samples(texts: list[str], labels: Optional[list[int]], task: str, encoder: Encoder, length: int, packing: bool,
            cap: Optional[int], generator: torch.Generator) -> TextTensors:
    """The split's samples: packed blocks, or one padded text per sample (with its label for classification)."""
    if task == "causal_lm" and packing:
        blocks = pack(encoder.encode_all(texts), encoder.eos_id, length)
        return TextTensors(input_ids=blocks[_draw(len(blocks), cap, generator)])
    keep = _draw(len(texts), cap, generator).tolist()
    texts = [texts[i] for i in keep]
    if task == "causal_lm":
        ids, mask = pad(encoder.encode_all(texts), encoder.pad_id, length, end_id=encoder.eos_id)
        return TextTensors(input_ids=ids, attention_mask=mask)
    ids, mask = pad(encoder.encode_all(texts, special=True), encoder.pad_id, length)
    return TextTensors(input_ids=ids, attention_mask=mask, labels=torch.tensor([labels[i] for i in keep]))


def _draw(n: int, cap: Optional[int], generator: torch.Generator) -> torch.Tensor:
    """Indices of at most ``cap`` of ``n`` samples, drawn by ``generator`` and kept in order."""
    if cap is None or n <= cap:
        return torch.arange(n)
    return torch.randperm(n, generator=generator)[:cap].sort().values
