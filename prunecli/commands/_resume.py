"""``prunecli prune trainer.resume=<run dir>``: continue a killed run with its own config, in its own run dir.

Before Hydra composes anything, the command line is rewritten: the killed run's overrides (Hydra saved them
in ``<run dir>/.hydra/overrides.yaml``) go in front of the ones typed now, a typed key replacing the saved
one, and ``hydra.run.dir`` points at the killed run's dir, so its ``metrics.jsonl`` and checkpoints continue.
The engine then checks the composed config against the checkpoint's (:func:`prunecli.engine.state.check_resume_config`).

The saved overrides are data read from a file: one that could run code or read other config (a key with
``_target_``, a value with ``${``) is used only when typed again on the command line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from prunecli.errors import CheckpointError, ConfigError

RESUME_KEY = "trainer.resume"
SAVED = Path(".hydra") / "overrides.yaml"


def resume_command(overrides: list[str]) -> list[str]:
    """``overrides`` with a killed run's saved ones and its run dir added when ``trainer.resume`` is typed.

    Unchanged without ``trainer.resume``, or for a checkpoint outside a prune run dir (nothing saved to reuse).
    """
    at, value = _typed_resume(overrides)
    if value is None:
        return overrides
    if any(word in ("-m", "--multirun") for word in overrides):
        raise ConfigError(RESUME_KEY, value, "a single run", "-m/--multirun sweeps cannot resume a run")
    run = find_run_dir(value)
    if run is None:
        return overrides
    typed = {override_key(word) for word in overrides if "=" in word or word.startswith("~")}
    kept = []
    for saved in read_saved_overrides(run):
        if override_key(saved) in typed:
            continue  # typed now: the typed value wins
        if not plain_saved_override(saved):
            raise ConfigError(RESUME_KEY, value, "a run whose saved overrides name no _target_, no hydra.* key "
                              "and hold no ${...}", f"{run / SAVED} has {saved!r}; type it on the command line "
                              "to use it")
        kept.append(saved)
    run_dir = [] if "hydra.run.dir" in typed else [f"hydra.run.dir={quote(str(run.resolve()))}"]
    # Next to the typed resume override, so Hydra's argparse sees one contiguous run of overrides.
    return [*overrides[:at], *kept, overrides[at], *run_dir, *overrides[at + 1 :]]


def plain_saved_override(saved: str) -> bool:
    """Whether a saved override is safe to replay from a file: it names no ``_target_`` anywhere (a key, or a
    mapping in its value), no ``hydra.*`` key (callbacks, search paths, launchers: Hydra never saves those there)
    and no ``${...}`` interpolation."""
    key = override_key(saved)
    hydra = key == "hydra" or key.startswith(("hydra.", "hydra/"))
    return "_target_" not in saved and "${" not in saved and not hydra


def find_run_dir(value: str) -> Optional[Path]:
    """The prune run dir of a ``trainer.resume`` value, or None.

    The value is the run dir, its ``checkpoint/`` or a ``checkpoint/<name>`` (``last``, ``best``).
    """
    path = Path(value).expanduser()
    for candidate in (path, path.parent, path.parent.parent):
        if (candidate / SAVED).is_file():
            return candidate
    return None


def read_saved_overrides(run: Path) -> list[str]:
    """The overrides Hydra saved for ``run``: a YAML list of strings, or a :class:`CheckpointError`."""
    import yaml

    path = run / SAVED
    try:
        saved = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise CheckpointError(f"{path} is unreadable: {str(err).splitlines()[0]}") from None
    if saved is None:
        return []
    if not isinstance(saved, list) or not all(isinstance(item, str) for item in saved):
        raise CheckpointError(f"{path} is not a list of overrides (key=value strings)")
    return saved


def override_key(word: str) -> str:
    """The key an override sets (``model``, ``trainer.lr``, ``model@x``), without ``+``, ``++`` or ``~``."""
    return word.partition("=")[0].lstrip("+~").strip()


def _typed_resume(overrides: list[str]) -> tuple[int, Optional[str]]:
    """Index and value of the typed ``trainer.resume=...`` (the last one), or ``(-1, None)``."""
    for i in range(len(overrides) - 1, -1, -1):
        if override_key(overrides[i]) == RESUME_KEY and "=" in overrides[i]:
            value = _override_value(overrides[i])
            return (i, value) if value not in (None, "", "null") else (-1, None)
    return -1, None


def _override_value(word: str) -> Optional[str]:
    """The value of one override as Hydra parses it (quotes removed); None if it does not parse."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        value = OverridesParser.create().parse_override(word).value()
    except Exception:  # noqa: BLE001  Hydra reports the bad override itself, once it composes
        return None
    return None if value is None else str(value)


def quote(text: str) -> str:
    """A Hydra override value that keeps ``text`` as one string (spaces, ``=``, ``,`` ...)."""
    import re

    # Hydra unescapes backslashes only before a quote (or the closing one): double those, escape the quote.
    text = re.sub(r"(\\*)'", lambda m: m.group(1) * 2 + "\\'", text)
    return "'" + re.sub(r"(\\+)$", lambda m: m.group(1) * 2, text) + "'"
