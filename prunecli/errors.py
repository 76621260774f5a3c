"""The project's error type for bad user input.

User errors are not assertions: every check of user input raises :class:`ConfigError`, whose message is one
line naming the key, the bad value and what is allowed. The CLI prints that line and exits non-zero.
"""

from __future__ import annotations

from typing import Any, Iterable


class ConfigError(ValueError):
    """Bad user input: a config key with a value that is not allowed.

    Args:
        key: Dotted config key, e.g. ``pruner.target``.
        value: The value the user gave.
        allowed: What is allowed, as a phrase (``"a float in [0, 1)"``) or an iterable of choices.
        reason: Optional short explanation appended after the allowed values.
    """

    def __init__(self, key: str, value: Any, allowed: str | Iterable[Any], reason: str | None = None):
        if not isinstance(allowed, str):
            allowed = "one of " + ", ".join(str(a) for a in allowed)
        self.key, self.value, self.allowed, self.reason = key, value, allowed, reason
        msg = f"{key}={value!r} is not allowed: expected {allowed}"
        if reason:
            msg += f" ({reason})"
        super().__init__(msg)


class CheckpointError(RuntimeError):
    """A checkpoint or exported file that is missing, corrupt or tampered with."""


def first_line(err: BaseException) -> str:
    """The first non-empty line of ``err``'s message, or its repr when it has none (for one-line errors)."""
    return next((line.strip() for line in str(err).splitlines() if line.strip()), repr(err))
