"""Datasets by short name, each returning a :class:`DataBundle` of train/val splits and their shape.

    from prunecli.data import build_dataset
    data = build_dataset("digits")            # embedded UCI digits: 1x8x8, 10 classes, 1437 / 360
    data = build_dataset("cifar10", root="~/data")
    data = build_dataset("stdlib_text")       # embedded text: the stdlib's .py files as bytes, task causal_lm
    data = build_dataset("text_files", train="train.jsonl", label_field="label")  # your own text (datasets)

Config nodes ``conf/dataset/<name>.yaml`` point ``_target_`` at :func:`build_dataset`.
"""

from prunecli.data import digits, fake, stdlib_text, text_files, torchvision_datasets  # noqa: F401  (registers)
from prunecli.data._registry import list_datasets, register_dataset
from prunecli.data.bundle import DataBundle, ImageTensorDataset
from prunecli.data.factory import build_dataset
from prunecli.data.stdlib_text import ByteTokenizer, TokenSequences
from prunecli.data.text_encoding import Encoder, TextTensors, load_encoder

__all__ = ["ByteTokenizer", "DataBundle", "Encoder", "ImageTensorDataset", "TextTensors", "TokenSequences",
           "build_dataset", "list_datasets", "load_encoder", "register_dataset"]
