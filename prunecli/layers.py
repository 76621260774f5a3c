"""Which modules a pruner targets: regexes on module FQNs, module types, excludes, and the last classifier."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from torch import nn

from prunecli.errors import ConfigError

CLASSIFIER_TYPES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def _compile(patterns: tuple[str, ...], key: str) -> list[re.Pattern]:
    compiled = []
    for p in patterns:
        try:
            compiled.append(re.compile(p))
        except re.error as exc:
            raise ConfigError(key, p, "a valid regular expression", str(exc)) from None
    return compiled


def _module_type(name: str, key: str) -> type[nn.Module]:
    cls = getattr(nn, name, None)
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise ConfigError(key, name, "a torch.nn module class name such as Linear, Conv2d, MultiheadAttention")
    return cls


@dataclass(frozen=True)
class LayerSelection:
    """Rules selecting the modules to prune.

    Attributes:
        include: Regexes matched against the whole module FQN (``re.fullmatch``); empty = every module of
            ``types``. Each regex must match at least one module.
        types: ``torch.nn`` class names; empty = the target's own default types.
        exclude: Regexes (``re.fullmatch``) of module FQNs to leave dense.
        exclude_last: Leave the model's last Linear/Conv layer (in registration order, normally the
            classifier) dense: pruning it costs accuracy for few parameters.
    """

    include: tuple[str, ...] = ()
    types: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    exclude_last: bool = True

    @classmethod
    def from_config(cls, cfg: Any, key: str = "pruner.layers") -> "LayerSelection":
        cfg = dict(cfg or {})
        for option in cfg:
            if option not in cls.__dataclass_fields__:
                raise ConfigError(f"{key}.{option}", cfg[option], sorted(cls.__dataclass_fields__))
        for option in ("include", "types", "exclude"):
            value = cfg.get(option, ())
            cfg[option] = (value,) if isinstance(value, str) else tuple(value or ())
        if not isinstance(cfg.get("exclude_last", True), bool):
            raise ConfigError(f"{key}.exclude_last", cfg["exclude_last"], "true or false")
        return cls(**cfg)

    def select(self, model: nn.Module, default_types: tuple[type[nn.Module], ...],
               key: str = "pruner.layers") -> dict[str, nn.Module]:
        """The selected modules, keyed by FQN, in registration order (possibly none: the pruner checks that
        its target found something to prune)."""
        types = tuple(_module_type(t, f"{key}.types") for t in self.types) or default_types
        include = _compile(self.include, f"{key}.include")
        exclude = _compile(self.exclude, f"{key}.exclude")
        candidates = {n: m for n, m in model.named_modules() if n and isinstance(m, types)}
        for pattern in include:
            if not any(pattern.fullmatch(n) for n in candidates):
                raise ConfigError(f"{key}.include", pattern.pattern,
                                  f"a regex matching the FQN of a {'/'.join(t.__name__ for t in types)} module, "
                                  f"e.g. {next(iter(candidates), 'none exists')}")
        chosen = {n: m for n, m in candidates.items()
                  if (not include or any(p.fullmatch(n) for p in include)) and not any(p.fullmatch(n) for p in exclude)}
        if self.exclude_last:
            last = [n for n, m in model.named_modules() if isinstance(m, CLASSIFIER_TYPES)]
            if last:
                chosen.pop(last[-1], None)
        return chosen

    def describe(self) -> dict[str, Any]:
        return {"include": list(self.include), "types": list(self.types), "exclude": list(self.exclude),
                "exclude_last": self.exclude_last}
