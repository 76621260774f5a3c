"""torchvision imports through prunecli's shim in a fresh interpreter, and only when asked for."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
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


HF_SCRIPT = textwrap.dedent(
    """
    import sys
    {first}
    {second}
    print("torch_early", "torch" in sys.modules and "torchvision" in sys.modules)
    from transformers import BertConfig, BertModel
    model = BertModel(BertConfig(hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=8,
                                 vocab_size=16))
    print("params", sum(p.numel() for p in model.parameters()) > 0)
    """
)


def _run_hf(first: str, second: str) -> list[str]:
    script = HF_SCRIPT.format(first=first, second=second)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout.split("\n")[:2]


def test_transformers_models_import_whether_prunecli_comes_first_or_second():
    pytest.importorskip("transformers")
    assert _run_hf("import prunecli", "import transformers") == ["torch_early False", "params True"]
    assert _run_hf("import transformers", "import prunecli") == ["torch_early False", "params True"]


def test_a_model_class_that_failed_before_prunecli_imports_after_it():
    pytest.importorskip("transformers")
    first = textwrap.dedent(
        """
        import transformers
        try:
            from transformers import BertModel
        except Exception:
            pass
        """
    )
    # Whether the first attempt failed depends on the torchvision build; after import prunecli it must work.
    assert _run_hf(first, "import prunecli")[1] == "params True"
