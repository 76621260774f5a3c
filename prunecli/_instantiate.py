"""``hydra.utils.instantiate`` with prunecli's error contract: user errors surface as one line.

Hydra wraps whatever a ``_target_`` raises in an ``InstantiationException`` (a multi-line message); a
:class:`ConfigError` or :class:`CheckpointError` from a builder is re-raised as it is, and anything else a
builder rejects (``lr=-1`` to an optimizer, say) becomes a :class:`ConfigError` naming the config key.
"""

from __future__ import annotations

from typing import Any

from prunecli.errors import CheckpointError, ConfigError

ALLOWED = "a _target_ and arguments it accepts"


def build(node: Any, key: str, *args: Any, **kwargs: Any) -> Any:
    """Instantiate ``node`` (the config at ``key``); a ``_partial_`` node is then called with ``args, kwargs``.

    For a node without ``_partial_``, ``kwargs`` override its fields, as in ``hydra.utils.instantiate``.
    """
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    partial = bool(node.get("_partial_", False))
    try:
        built = instantiate(node) if partial else instantiate(node, *args, **kwargs)
        return built(*args, **kwargs) if partial else built
    except (ConfigError, CheckpointError):
        raise
    except InstantiationException as err:
        cause = err.__cause__
        if isinstance(cause, (ConfigError, CheckpointError)):
            raise cause from None
        reason = str(cause) if cause is not None else str(err).splitlines()[0]
        raise ConfigError(key, node.get("_target_"), ALLOWED, _one_line(reason)) from None
    except (TypeError, ValueError) as err:
        raise ConfigError(key, node.get("_target_"), ALLOWED, _one_line(str(err))) from None


def _one_line(text: str) -> str:
    """Hydra's import errors span lines ("Error loading ...:\\nModuleNotFoundError(...)"): join them."""
    return " ".join(text.split())
