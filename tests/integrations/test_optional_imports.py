"""The integrations import lazily: ``import prunecli.integrations`` needs neither framework, and a callback
module whose framework is missing says in one line which extra to install."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest


def test_the_package_imports_without_transformers_or_lightning():
    code = ("import sys; sys.modules['transformers'] = sys.modules['lightning'] = None\n"
            "import prunecli.integrations\n"
            "assert not any(m.split('.')[0] in ('transformers', 'lightning', 'accelerate') and sys.modules[m]"
            " for m in sys.modules), 'a framework was imported'\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("module, framework, extra", [
    ("prunecli.integrations.hf", "transformers", "prunecli[hf]"),
    ("prunecli.integrations.lightning", "lightning", "prunecli[lightning]"),
])
def test_a_missing_framework_names_its_extra_in_one_line(monkeypatch, module, framework, extra):
    monkeypatch.setitem(sys.modules, framework, None)  # import of it raises ImportError, as when not installed
    for name in [m for m in sys.modules if m == module or m.startswith(framework + ".")]:
        monkeypatch.delitem(sys.modules, name)
    with pytest.raises(ImportError) as info:
        importlib.import_module(module)
    message = str(info.value)
    assert f"pip install {extra}" in message and framework in message and "\n" not in message
