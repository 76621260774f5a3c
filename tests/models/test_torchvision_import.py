"""torchvision imports through prunecli's shim in a fresh interpreter, and only when asked for."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import torch

from prunecli._torchvision import import_torchvision

SCRIPT = textwrap.dedent(
    """
    import sys
    import prunecli.data, prunecli.models
    print("imported_early", "torchvision" in sys.modules)
    from prunecli._torchvision import import_torchvision
    tv = import_torchvision()
    import torchvision
    print("same_module", torchvision is tv, import_torchvision() is tv)
    print("models", len(tv.models.list_models(module=tv.models)) > 50)
    print("transform", tuple(tv.transforms.ToTensor()(__import__("PIL.Image").Image.new("L", (3, 2))).shape))
    """
)


def test_fresh_interpreter_imports_torchvision_lazily_and_fully():
    result = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[:4] == [
        "imported_early False", "same_module True True", "models True", "transform (1, 2, 3)",
    ]


def test_import_torchvision_is_idempotent():
    tv = import_torchvision()
    assert import_torchvision() is tv
    assert tv.models.resnet18(num_classes=3)(torch.randn(2, 3, 16, 16)).shape == (2, 3)
