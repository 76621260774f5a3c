"""Forward hooks that feed a criterion the activations of the sites' output modules.

The pruner installs them only while a mask update needs activations and removes them itself, so in the
steady state no hook runs on the forward pass.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from prunecli.sites import Site


class ActivationTaps:
    """Forward hooks on each site's :attr:`~prunecli.sites.Site.output_module`, calling
    ``criterion.observe_activation(site, output)``."""

    def __init__(self, model: nn.Module, sites: dict[str, Site], criterion: Any):
        self._targets = [(model.get_submodule(site.output_module), site) for site in sites.values()]
        self._criterion = criterion
        self._handles: list[Any] = []

    @property
    def installed(self) -> bool:
        return bool(self._handles)

    def install(self) -> None:
        if self._handles:
            return
        for module, site in self._targets:
            self._handles.append(module.register_forward_hook(self._hook(site)))

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def _hook(self, site: Site):
        def observe(module: nn.Module, inputs: Any, output: Any) -> None:
            self._criterion.observe_activation(site, output)

        return observe
