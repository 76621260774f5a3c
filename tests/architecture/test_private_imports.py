"""No package imports another package's private module or private name.

A name is private to the package that contains it: ``prunecli.allocation._select`` and
``prunecli.allocation._check_caps`` belong to ``prunecli.allocation`` and may be imported only from inside it;
``prunecli._atomic`` belongs to ``prunecli`` and so may be imported from anywhere in prunecli. Make a name
public where it lives (or move it) instead of reaching into another package. Read from the source with ``ast``,
so imports inside functions count too.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "prunecli"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _owner(dotted: str) -> str | None:
    """The package a private dotted name belongs to: everything before its first private part (None: public)."""
    parts = dotted.split(".")
    for i, part in enumerate(parts[1:], start=1):
        if part.startswith("_") and not part.startswith("__"):
            return ".".join(parts[:i])
    return None


def _imports(tree: ast.AST, module: str, is_package: bool) -> list[str]:
    """Every dotted name imported (``from a.b import c`` gives ``a.b.c``), relative imports resolved."""
    base = module if is_package else module.rpartition(".")[0]
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            source = node.module or ""
            if node.level:
                anchor = base.split(".")[: len(base.split(".")) - (node.level - 1)]
                source = ".".join(anchor + ([source] if source else []))
            names += [f"{source}.{alias.name}" for alias in node.names if alias.name != "*"]
    return [n for n in names if n == "prunecli" or n.startswith("prunecli.")]


def violations() -> list[str]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = _module_name(path)
        tree = ast.parse(path.read_text(), filename=str(path))
        for name in _imports(tree, module, path.name == "__init__.py"):
            owner = _owner(name)
            if owner is not None and not (module == owner or module.startswith(owner + ".")):
                found.append(f"{module} imports {name} (private to {owner})")
    return found


def test_no_package_imports_another_packages_private_names():
    assert violations() == []


def test_the_check_sees_a_private_import():
    tree = ast.parse("from prunecli.allocation._select import select_lowest\nfrom prunecli.allocation import _caps\n")
    names = _imports(tree, "prunecli.search.base", False)
    assert [(_owner(n)) for n in names] == ["prunecli.allocation", "prunecli.allocation"]
    assert _owner("prunecli._atomic.write_bytes") == "prunecli"   # top-level primitives: private to all of prunecli
