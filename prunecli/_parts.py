"""One way to turn a config value into an axis part: a short name, ``{name: ..., **options}``, or a user's
class by dotted path ``{_target_: my.module.MyPart, ...}`` (built with ``hydra.utils.instantiate``)."""

from __future__ import annotations

from typing import Any, Mapping

from prunecli.errors import ConfigError


def build_part(spec: Any, registry: Mapping[str, type], key: str, default: str | None = None) -> Any:
    """Build the part ``spec`` names from ``registry`` (name -> dataclass), checking every option.

    Raises:
        ConfigError: An unknown name (listing the registry) or an option the part does not take.
    """
    options: dict[str, Any] = {}
    if isinstance(spec, Mapping):
        options = dict(spec)
        if "_target_" in options:
            from hydra.utils import instantiate

            return instantiate(options)
        spec = options.pop("name", default)
    cls = registry.get(str(spec).strip().lower())
    if cls is None:
        raise ConfigError(key, spec, sorted(registry))
    fields = sorted(f for f in getattr(cls, "__dataclass_fields__", {}) if not f.startswith("_"))
    for option in options:
        if option not in fields:
            raise ConfigError(f"{key}.{option}", options[option], f"an option of {spec}: {fields or 'none'}")
    return cls(**options)
