"""One registry idiom for every kind of part: a name -> class (or module, or function) mapping filled by a
decorator, and one builder for config values.

A config value names a part in one of three ways, :meth:`Registry.build` takes them all:

- a short name, ``magnitude``;
- a mapping ``{name: random, seed: 1}``: the options are checked against the part's dataclass fields (an
  unknown one is a one-line :class:`~prunecli.errors.ConfigError` listing the allowed ones);
- a user's own class by dotted path, ``{_target_: my.module.MyCriterion, ...}``: built by
  :func:`prunecli._instantiate.build`, so a missing module or a bad argument is one line naming the key too.

Example::

    CRITERIA = Registry("criterion")

    @CRITERIA.register("magnitude")
    @dataclass
    class Magnitude: ...

    CRITERIA.build({"name": "magnitude"}, "pruner.criterion")
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Callable, Iterator, TypeVar

from prunecli.errors import ConfigError

_T = TypeVar("_T")


class Registry(Mapping):
    """Parts of one kind by config name (a read-only mapping: ``REG[name]``, ``name in REG``, ``sorted(REG)``)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._parts: dict[str, Any] = {}

    def register(self, name: str) -> Callable[[_T], _T]:
        """Decorator: register the decorated part as ``name`` (twice is a programming error: ValueError)."""

        def decorate(part: _T) -> _T:
            self.add(name, part)
            return part

        return decorate

    def add(self, name: str, part: Any) -> Any:
        """Register ``part`` as ``name`` (for parts defined elsewhere, such as modules); returns ``part``."""
        name = name.strip().lower()  # looked up case-blind (see get): stored so
        if name in self._parts:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._parts[name] = part
        return part

    def get(self, name: Any, default: Any = None) -> Any:
        """The part registered as ``name`` (case and surrounding blanks ignored), or ``default``."""
        return self._parts.get(str(name).strip().lower(), default)

    def names(self) -> list[str]:
        """The registered names, sorted."""
        return sorted(self._parts)

    def name_of(self, part: Any) -> str | None:
        """The name a built part's class is registered under, or None for a user's own part."""
        return next((name for name, cls in self._parts.items() if type(part) is cls), None)

    def build(self, spec: Any, key: str, default: str | None = None) -> Any:
        """Build the part ``spec`` names (see the module docstring); ``default`` is the name of a mapping without one.

        Raises:
            ConfigError: An unknown name (listing the registered ones), an option the part does not take, or a
                ``_target_`` that cannot be built.
        """
        return build_part(spec, self, key, default)

    def __getitem__(self, name: str) -> Any:
        return self._parts[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._parts)

    def __len__(self) -> int:
        return len(self._parts)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {', '.join(self.names())})"


def fields_of(cls: Any) -> list[str]:
    """The config options of a dataclass part: its fields, less private ones (``_name``)."""
    return sorted(f for f in getattr(cls, "__dataclass_fields__", {}) if not f.startswith("_"))


def build_part(spec: Any, registry: Mapping[str, Any], key: str, default: str | None = None) -> Any:
    """Build the part ``spec`` names from ``registry`` (a :class:`Registry` or a plain name -> class mapping).

    Raises:
        ConfigError: As :meth:`Registry.build`.
    """
    options: dict[str, Any] = {}
    if isinstance(spec, Mapping):
        options = dict(spec)
        if "_target_" in options:
            return build_target(options, key)
        spec = options.pop("name", default)
    cls = registry.get(str(spec).strip().lower())
    if cls is None:
        raise ConfigError(key, spec, sorted(registry))
    allowed = fields_of(cls)
    for option in options:
        if option not in allowed:
            raise ConfigError(f"{key}.{option}", options[option], f"an option of {spec}: {allowed or 'none'}")
    return cls(**options)


def build_target(node: Mapping[str, Any], key: str) -> Any:
    """A user's part ``{_target_: ..., **arguments}``, with prunecli's one-line errors (key ``<key>._target_``)."""
    from prunecli._instantiate import build

    return build(dict(node), f"{key}._target_")
