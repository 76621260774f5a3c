"""``prunecli --version`` and ``prunecli <subcommand> --version`` print prunecli's version and torch's (Hydra
would answer the subcommand's flag with its own version)."""

from __future__ import annotations

from importlib.metadata import version

import pytest

import prunecli

EXPECTED = f"prunecli {prunecli.__version__} (torch {version('torch')})"


@pytest.mark.parametrize("args", [["--version"], ["prune", "--version"], ["evaluate", "--version"],
                                  ["export", "--version"], ["prune", "model=cnn", "--version"]])
def test_version(cli, args):
    result = cli(*args)
    assert result.exit_code == 0, (result.stdout, result.stderr)
    assert result.stdout.strip() == EXPECTED
    assert "Hydra" not in result.stdout + result.stderr


def test_help_lists_the_flag(cli):
    result = cli("--help")
    assert result.exit_code == 0 and "--version" in result.stdout
