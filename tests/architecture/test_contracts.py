"""The architecture contracts of pyproject.toml's ``[tool.importlinter]`` hold (layers, primitives), and the
package has no import cycle between its subpackages."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_import_linter_contracts_hold(tmp_path, monkeypatch, capsys):
    pytest.importorskip("importlinter")
    import logging

    from importlinter.cli import lint_imports

    monkeypatch.chdir(ROOT)
    loggers = [logging.getLogger(name) for name in list(logging.root.manager.loggerDict)]
    enabled = [logger for logger in loggers if not logger.disabled]
    try:
        code = lint_imports(config_filename=str(ROOT / "pyproject.toml"), cache_dir=str(tmp_path), no_logo=True)
    finally:  # import-linter configures logging with disable_existing_loggers: later tests read prunecli's logs
        for logger in enabled:
            logger.disabled = False
    out = capsys.readouterr().out
    assert code == 0, out
    assert "Contracts: 2 kept, 0 broken." in out, out


def test_no_import_cycle_between_subpackages():
    grimp = pytest.importorskip("grimp")
    graph = grimp.build_graph("prunecli", cache_dir=None)
    packages = sorted({".".join(m.split(".")[:2]) for m in graph.modules if m.count(".") >= 1})
    cycles = [(a, b) for a in packages for b in packages if a < b
              and graph.find_shortest_chain(importer=a, imported=b, as_packages=True) is not None
              and graph.find_shortest_chain(importer=b, imported=a, as_packages=True) is not None]
    assert cycles == []
