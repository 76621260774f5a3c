"""Only the package list lives here (everything else is in pyproject.toml): prunecli's subpackages plus
prunecli.conf, which setuptools' find cannot see because its directory is the top-level conf/."""

from setuptools import find_packages, setup

setup(packages=find_packages(include=["prunecli", "prunecli.*"]) + ["prunecli.conf"])
