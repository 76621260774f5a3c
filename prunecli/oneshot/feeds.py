"""Hooks that hand a block's linear layers' calibration inputs to a one-shot method's statistics.

Every ``nn.Linear`` (and transformers' ``Conv1D``) gets a forward pre-hook reading its input.
``nn.MultiheadAttention`` does not call its ``out_proj`` (it reads the weight directly), so the attention module
itself is hooked: its query feeds ``in_proj_weight`` (self-attention: query, key and value are one tensor) or
the query/key/value feed ``q/k/v_proj_weight``, and its output is recomputed once with an identity ``out_proj``
to get the input of ``out_proj``.

Layers that read the same tensor object (q/k/v projections, an MLP's gate and up projections) are observed
once, together: ``observe(names, x)`` gets every parameter name that read ``x``, so a statistic (a Hessian)
is accumulated and later factorised once for all of them.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import Tensor, nn
from torch.func import functional_call

from prunecli.oneshot.blocks import prunable_types

Observe = Callable[[tuple[str, ...], Tensor], None]


class InputFeeds:
    """Forward hooks on the layers of ``block`` (named ``prefix``) whose weights are in ``params``.

    Use as a context manager around the block's forward passes; :attr:`observed` holds the parameter names
    that received an input.
    """

    def __init__(self, block: nn.Module, prefix: str, params: set[str], observe: Observe):
        self._block, self._prefix, self._params, self._observe = block, prefix, params, observe
        self._handles: list[Any] = []
        self._pending: tuple[list[str], Tensor] | None = None
        self._inside = False  # the recomputation of an attention output must not feed the hooks again
        self.observed: set[str] = set()

    def __enter__(self) -> "InputFeeds":
        attention_out = {id(m.out_proj) for m in self._block.modules() if isinstance(m, nn.MultiheadAttention)}
        linear = tuple(t for t in prunable_types() if t is not nn.MultiheadAttention)  # Linear, GPT-2's Conv1D
        for name, module in self._block.named_modules():
            fqn = f"{self._prefix}.{name}" if name else self._prefix
            if isinstance(module, nn.MultiheadAttention):
                self._handles.append(module.register_forward_pre_hook(self._attention_in(fqn), with_kwargs=True))
                if f"{fqn}.out_proj.weight" in self._params:
                    self._handles.append(module.register_forward_hook(self._attention_out(fqn), with_kwargs=True))
            elif isinstance(module, linear) and id(module) not in attention_out and f"{fqn}.weight" in self._params:
                self._handles.append(module.register_forward_pre_hook(self._linear(f"{fqn}.weight")))
        return self

    def __exit__(self, *exc: Any) -> None:
        self.flush()
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def see(self, name: str, x: Tensor) -> None:
        """Queue ``x`` as the input of parameter ``name``; consecutive reads of one tensor are grouped."""
        if name not in self._params or not isinstance(x, Tensor):
            return
        self.observed.add(name)
        if self._pending is not None and x is self._pending[1]:
            self._pending[0].append(name)
            return
        self.flush()
        self._pending = ([name], x)

    def flush(self) -> None:
        """Hand the queued input to ``observe`` (called when a different tensor arrives and at the end)."""
        if self._pending is not None:
            names, x = self._pending
            self._pending = None
            self._observe(tuple(names), x)

    def _linear(self, name: str):
        def hook(module: nn.Module, args: tuple) -> None:
            if not self._inside and args:
                self.see(name, args[0])

        return hook

    def _attention_in(self, fqn: str):
        def hook(module: nn.MultiheadAttention, args: tuple, kwargs: dict) -> None:
            if self._inside:
                return
            q, k, v = (*args, *(kwargs.get(n) for n in ("query", "key", "value")[len(args):]))[:3]
            if q is k and k is v:
                self.see(f"{fqn}.in_proj_weight", q)
            for name, x in (("q_proj_weight", q), ("k_proj_weight", k), ("v_proj_weight", v)):
                self.see(f"{fqn}.{name}", x)

        return hook

    def _attention_out(self, fqn: str):
        def hook(module: nn.MultiheadAttention, args: tuple, kwargs: dict, output: Any) -> None:
            if self._inside:
                return
            weight = module.out_proj.weight
            identity = {"out_proj.weight": torch.eye(weight.shape[1], dtype=weight.dtype, device=weight.device)}
            if module.out_proj.bias is not None:
                identity["out_proj.bias"] = torch.zeros_like(module.out_proj.bias)
            self._inside = True
            try:
                values = functional_call(module, identity, args, kwargs)[0]
            finally:
                self._inside = False
            self.see(f"{fqn}.out_proj.weight", values)

        return hook
