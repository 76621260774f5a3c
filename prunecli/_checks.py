"""Number checks shared by the config readers: an integer or a finite number in a range, else a ConfigError.

Hydra parses ``seed=abc`` as a string, ``x=nan`` and ``x=inf`` as floats and ``x=1.5`` as a float, so every
numeric key is checked for its type, its range and (floats) finiteness where it is read, before any work.
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Mapping, Optional

from prunecli.errors import ConfigError


def integer(key: str, value: Any, minimum: int, maximum: Optional[int] = None, *,
            optional: bool = False) -> Optional[int]:
    """``value`` as an int in ``[minimum, maximum]`` (bools and floats refused); None passes if ``optional``."""
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum or (
            maximum is not None and value > maximum):
        allowed = f"an integer >= {minimum}" if maximum is None else f"an integer in [{minimum}, {maximum}]"
        raise ConfigError(key, value, allowed + (" or null" if optional else ""))
    return value


def number(key: str, value: Any, minimum: Optional[float] = None, *, above: bool = False,
           optional: bool = False) -> Optional[float]:
    """``value`` as a finite float ``>= minimum`` (``> minimum`` if ``above``); None passes if ``optional``."""
    if value is None and optional:
        return None
    ok = not isinstance(value, bool) and isinstance(value, (int, float)) and _finite(value)
    if ok and minimum is not None:
        ok = value > minimum if above else value >= minimum
    if not ok:
        allowed = "a finite number" + ("" if minimum is None else f" {'>' if above else '>='} {minimum:g}")
        raise ConfigError(key, value, allowed + (" or null" if optional else ""))
    return float(value)


def known_keys(prefix: str, options: Mapping[str, Any], keys: Iterable[str]) -> None:
    """Refuse a key of ``options`` not in ``keys`` (a typo such as ``onnx.opst=13`` would be ignored)."""
    keys = tuple(keys)
    for key in options:
        if key not in keys:
            raise ConfigError(f"{prefix}.{key}", options[key], f"a key of {prefix}: " + ", ".join(keys)
                              if keys else f"no key under {prefix}")



def _finite(value: int | float) -> bool:
    """``math.isfinite``, also for an int too large for a float (``10**400``: not a usable number here)."""
    try:
        return math.isfinite(value)
    except OverflowError:
        return False
