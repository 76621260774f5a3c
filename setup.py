"""The package list (everything else is in pyproject.toml): prunecli's subpackages plus prunecli.conf, which
setuptools' find cannot see because its directory is the top-level conf/; and a start-up file.

``prunecli-torchvision.pth`` goes into site-packages beside the package (a regular install; an editable install
leaves it out). Python runs its one line at start-up: ``import prunecli``, which imports no torch and only
installs the finder of ``prunecli/_torchvision.py``, so the registry's CUDA build of torchvision imports on a CPU
torch, and with it ``transformers``' model classes, in any script of that environment, whether or not it
imports prunecli.
"""

from pathlib import Path

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

STARTUP = "prunecli-torchvision.pth"


class BuildWithStartupFile(build_py):
    """build_py that also places :data:`STARTUP` at the top of the wheel (site-packages)."""

    def run(self) -> None:
        super().run()
        self.copy_file(STARTUP, str(Path(self.build_lib) / STARTUP), preserve_mode=0)

    def get_outputs(self, include_bytecode: bool = True) -> list[str]:
        return [*super().get_outputs(include_bytecode), str(Path(self.build_lib) / STARTUP)]


setup(packages=find_packages(include=["prunecli", "prunecli.*"]) + ["prunecli.conf"],
      cmdclass={"build_py": BuildWithStartupFile})
