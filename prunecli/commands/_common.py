"""What the task functions share: the run dir, the user-error boundary (also for sweep jobs), mandatory keys,
and the Hydra callback that claims run dirs, checks a resume's config and reports a sweep's failed jobs."""

from __future__ import annotations

import errno
import functools
import json
import logging
import sys
import traceback
from pathlib import Path
from typing import Any, Callable

from hydra.experimental.callback import Callback

from prunecli.commands._sweep import ERROR_FILE
from prunecli.errors import CheckpointError, ConfigError

log = logging.getLogger("prunecli")

USER_ERROR_EXIT = 2
INTERRUPT_EXIT = 130
UNEXPECTED_EXIT = 1
# OSErrors that are the machine's state, not a bug: one line like a user error (errno names, not numbers)
STORAGE_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO}


def run_dir() -> Path:
    """Hydra's output dir of the running job (version_base 1.3 does not chdir into it)."""
    from hydra.core.hydra_config import HydraConfig

    return Path(HydraConfig.get().runtime.output_dir)


def task(fn: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """Turn user errors raised by a task into one line on stderr and exit code 2, Ctrl-C into exit code 130.

    Hydra would otherwise print a traceback for any exception a job raises. In a sweep (``-m``) a failed job
    must not end the sweep: its error (one line, plus the traceback of an unexpected exception) goes to
    ``<job dir>/error.txt`` and the job returns None; :class:`RunDirCheck` reports the failures at the end.
    """

    @functools.wraps(fn)
    def wrapper(cfg: Any) -> Any:
        sweep = in_sweep()
        if sweep:
            (run_dir() / ERROR_FILE).unlink(missing_ok=True)  # from an earlier sweep into the same dir
        try:
            check_interpolations(cfg)
            return fn(cfg)
        except KeyboardInterrupt:
            last = run_dir() / "checkpoint" / "last"
            if last.is_dir():
                log.error("interrupted: checkpoint/last in %s is intact; continue with trainer.resume=%s",
                          run_dir(), run_dir())
            else:
                log.error("interrupted before any checkpoint was written")
            sys.exit(INTERRUPT_EXIT)
        except Exception as err:  # noqa: BLE001  a sweep records it and goes on; a single run lets Hydra report
            line = user_error_line(err)
            if line is not None:
                log.error("error: %s", line)
                if not sweep:
                    sys.exit(USER_ERROR_EXIT)
                _record_failure(f"error: {line}\n")
            elif not sweep:
                raise
            else:
                log.exception("error: %s: %s", type(err).__name__, err)
                _record_failure(f"error: {type(err).__name__}: {err}\n{traceback.format_exc()}")
        return None

    return wrapper


def user_error_line(err: BaseException) -> str | None:
    """One line for a user error (:class:`ConfigError`, :class:`CheckpointError`, or a storage OSError: a full
    disk, a read-only or failing device, naming the file; the atomic writers leave no partial file), else None."""
    if isinstance(err, OSError) and err.errno in STORAGE_ERRORS:
        text = f"cannot write {err.filename or 'a file'}: {err.strerror or err}"
    elif isinstance(err, (ConfigError, CheckpointError)):
        text = str(err)
    else:
        return None
    return "; ".join(part.strip() for part in text.splitlines() if part.strip())


def check_interpolations(cfg: Any) -> None:
    """Every ``${...}`` of the config resolves, or a :class:`ConfigError` naming the key (before any work).

    OmegaConf resolves lazily, so ``sparsity=${nope}`` would otherwise fail with a traceback wherever the
    key is first read. Resolving a copy leaves interpolations the engine fills in later (``total_steps``) live.
    Top-level values go first, so ``sparsity=${nope}`` is named rather than ``schedule.final_sparsity: ${sparsity}``.
    """
    from omegaconf import OmegaConf
    from omegaconf.errors import InterpolationResolutionError

    if not OmegaConf.is_config(cfg):
        return
    raw = OmegaConf.to_container(cfg, resolve=False)
    keys = sorted(raw, key=lambda k: isinstance(raw[k], (dict, list)))   # scalars first
    try:
        for key in keys:
            if OmegaConf.is_missing(cfg, key):   # ``???``: require() names it where it is needed
                continue
            value = cfg[key]
            if OmegaConf.is_config(value):
                OmegaConf.to_container(value, resolve=True)
    except InterpolationResolutionError as err:
        value = str(err.child_node) if err.child_node is not None else None
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ConfigError(err.full_key or "config", value, "an interpolation that resolves", reason) from None


def in_sweep() -> bool:
    """Whether the running job is one job of a Hydra multirun (``-m``)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def _record_failure(text: str) -> None:
    from prunecli._atomic import write_bytes

    write_bytes(run_dir() / ERROR_FILE, text.encode())


def require(cfg: Any, key: str, allowed: str) -> Any:
    """The value of a mandatory key (``???`` in the YAML), or a :class:`ConfigError` naming it."""
    from omegaconf import OmegaConf

    if OmegaConf.is_missing(cfg, key) or cfg.get(key) is None:
        raise ConfigError(key, None, allowed, reason=f"pass {key}=...")
    return cfg.get(key)


class RunDirCheck(Callback):
    """Hydra callback for run and sweep dirs, and the end-of-sweep report.

    - A timestamped dir (the default ``outputs/prune/<date>/<time>``, or a typed pattern with ``${now:...}``)
      is claimed with an atomic ``mkdir``: when another process took it in the same second, this run takes
      ``<dir>-1``, ``<dir>-2`` ... . Any other dir given as ``hydra.run.dir=`` / ``hydra.sweep.dir=`` (as a
      resume does) is used as given.
    - A dir that cannot be created is one ``error:`` line, not Hydra's traceback.
    - After a sweep, the jobs that failed (their ``error.txt``) are listed and the exit code is 2 when all were
      user errors, 1 otherwise.

    Hydra calls ``on_run_start`` / ``on_multirun_start`` after composing and before it reads the dir.
    """

    def __init__(self) -> None:
        self.sweep_started = 0.0

    def on_run_start(self, config: Any, **kwargs: Any) -> None:
        from prunecli.commands._parallel import place_run_dir

        _check_resume(config)
        place_run_dir(config, _place, lambda text: _quoted(Path(text)))  # data-parallel runs: see _parallel

    def on_multirun_start(self, config: Any, **kwargs: Any) -> None:
        import time

        from omegaconf import open_dict, read_write

        self.sweep_started = time.time()
        _check_optimize(config)
        planned = str(config.hydra.sweep.dir)
        path = _place(config, "sweep")
        if str(path) != planned:  # taken: each job composes its config again from the hydra overrides
            with read_write(config.hydra), open_dict(config.hydra):
                config.hydra.overrides.hydra.append(f"hydra.sweep.dir={_quoted(path)}")

    def on_multirun_end(self, config: Any, **kwargs: Any) -> None:
        from prunecli.commands._sweep import failed_jobs, report

        failures = failed_jobs(Path(str(config.hydra.sweep.dir)), _words(config.hydra.overrides.task),
                               since=self.sweep_started - 2.0)  # file times may lag the clock
        if failures:
            print(report(failures), file=sys.stderr)
            sys.exit(USER_ERROR_EXIT if all(f.user_error for f in failures) else UNEXPECTED_EXIT)


def _check_optimize(config: Any) -> None:
    """A sweeper that optimises (Optuna; not Hydra's basic one) needs ``optimize`` to name the number the task
    returns: without it every trial would fail. One line and exit code 2 before the first job."""
    sweeper = config.hydra.get("sweeper", None)  # always composed by Hydra; absent in a hand-made config
    if sweeper is None:
        return
    target = str(sweeper.get("_target_", ""))
    in_params = "optimize" in (sweeper.get("params", None) or {})  # fixed there for every trial
    if config.get("optimize", None) is None and not in_params and not target.endswith(".BasicSweeper"):
        error = ConfigError("optimize", None, "a summary metric, e.g. optimize=accuracy",
                            f"the sweeper {target.rpartition('.')[2]} optimises the number the task returns")
        print(f"error: {error}", file=sys.stderr)
        sys.exit(USER_ERROR_EXIT)


def _check_resume(config: Any) -> None:
    """A resume whose config differs from its checkpoint's is refused here, before Hydra writes the run dir's
    ``.hydra/`` (which holds the overrides the next resume reuses); the engine checks again for library users."""
    from omegaconf import OmegaConf

    from prunecli.checkpoint import resolve_checkpoint_path
    from prunecli.engine.state import check_resume_config

    resume = OmegaConf.select(config, "trainer.resume", default=None)
    if resume is None:
        return
    try:
        path = resolve_checkpoint_path(str(resume), "trainer.resume")
        saved = json.loads((path / "meta.json").read_text()).get("config")
        if isinstance(saved, dict):  # otherwise the engine's load names what is wrong with the checkpoint
            override = OmegaConf.select(config, "trainer.resume_override", default=False) is True
            check_resume_config(config, saved, path, override)
    except CheckpointError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(USER_ERROR_EXIT)
    except Exception:  # noqa: BLE001  an unreadable checkpoint or config: the task reports it in its own words
        return


def _place(config: Any, mode: str) -> Path:
    """Create ``hydra.<mode>.dir`` (claiming a fresh one unless typed) and write the path chosen into it."""
    from omegaconf import open_dict, read_write

    key = f"hydra.{mode}.dir"
    value = str(config.hydra[mode].dir)
    # A typed dir is used as given (a resume continues in its run dir), unless it is a timestamp pattern too.
    typed = any(word.partition("=")[0].lstrip("+") == key and "${now:" not in word
                for word in _words(config.hydra.overrides.hydra))
    path = _create(key, value, claim=not typed)
    with read_write(config.hydra), open_dict(config.hydra):
        config.hydra[mode].dir = str(path)
    return path


def _create(key: str, value: str, claim: bool) -> Path:
    """Make the dir ``value``; with ``claim``, one no other process has (``<dir>-1`` ... if taken).

    A dir that cannot be made or written is one ``error:`` line and exit code 2.
    """
    import os

    path = Path(value)
    try:
        if claim:
            path.parent.mkdir(parents=True, exist_ok=True)
            path = claim_dir(path)
        else:
            path.mkdir(parents=True, exist_ok=True)
        writable, reason = os.access(path, os.W_OK), None
    except OSError as err:
        writable, reason = False, err.strerror
    if not writable:
        error = ConfigError(key, value, "a directory that can be created and written", reason)
        print(f"error: {error}", file=sys.stderr)
        sys.exit(USER_ERROR_EXIT)
    return path


def claim_dir(path: Path) -> Path:
    """``path`` or the first free ``<path>-<n>``, created here: ``os.mkdir`` fails if another process has it."""
    import itertools
    import os

    for n in itertools.count():
        candidate = path if n == 0 else path.with_name(f"{path.name}-{n}")
        try:
            os.mkdir(candidate)
            return candidate
        except FileExistsError:
            continue
    raise AssertionError("unreachable")


def _words(overrides: Any) -> list[str]:
    """A list of overrides as typed (``${...}`` unresolved)."""
    from omegaconf import OmegaConf

    return [str(word) for word in OmegaConf.to_container(overrides, resolve=False)]


def _quoted(path: Path) -> str:
    from prunecli.commands._resume import quote

    return quote(str(path))
