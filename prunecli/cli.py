"""The ``prunecli`` command: Typer in front, Hydra behind.

Each subcommand takes its trailing arguments untouched and hands them to Hydra's own ``hydra.main`` with the
primary config of the same name (``conf/prune.yaml`` ...), so overrides, ``-m/--multirun``, launchers,
``--cfg job``, ``--info`` and Hydra's short errors behave exactly as in any Hydra app. The work itself is
one module-level task function per subcommand in :mod:`prunecli.commands` (launchers pickle it).

Hydra and torch are imported only when a subcommand runs (or shows its help), so ``prunecli --help`` and
tab completion stay fast.
"""

from __future__ import annotations

import sys
from typing import Any, Optional

import typer
from typer.core import TyperCommand

CONFIG_MODULE = "prunecli.conf"

app = typer.Typer(
    name="prunecli",
    help="Prune PyTorch models: [bold]prune[/], [bold]evaluate[/], [bold]export[/]; [bold]report[/] plots runs. "
    "Arguments after a subcommand are Hydra overrides (key=value, group=option, -m for sweeps, --cfg job).",
    no_args_is_help=True,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)

# Unknown options (-m, --cfg, --info, -cd ...) and all key=value words go to Hydra as they are.
_PASS_THROUGH = {"ignore_unknown_options": True, "allow_extra_args": True, "help_option_names": ["-h", "--help"]}


def config_groups(config_name: str) -> dict[str, tuple[list[str], Optional[str]]]:
    """The config groups of a primary config (and Hydra's launchers and sweepers):
    ``{group: (options, default or None)}``."""
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    with initialize_config_module(CONFIG_MODULE, version_base="1.3"):
        loader = GlobalHydra.instance().config_loader()
        try:
            choices = dict(compose(config_name, return_hydra_config=True).hydra.runtime.choices)
        except Exception:  # noqa: BLE001  help must render even when the defaults do not compose
            choices = {g: None for g in loader.list_groups("") if g != "hydra"}
        groups = sorted(g for g in choices if not g.startswith("hydra/")) + ["hydra/launcher", "hydra/sweeper"]
        return {g: (loader.get_group_options(g), choices.get(g)) for g in groups}


def version_text() -> str:
    """``prunecli <version> (torch <version>)``, read from the installed metadata (torch is not imported)."""
    from importlib.metadata import PackageNotFoundError, version

    def of(package: str) -> str:
        try:
            return version(package)
        except PackageNotFoundError:
            return "not installed"

    return f"prunecli {of('prunecli')} (torch {of('torch')})"


def _show_version(value: bool) -> None:
    if value:
        typer.echo(version_text())
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", help="Show prunecli's (and torch's) version and exit.",
                                 callback=_show_version, is_eager=True),
) -> None:
    """Prune PyTorch models."""


class _HydraCommand(TyperCommand):
    """A subcommand whose ``--help`` also lists the config groups and their options (composed once), and whose
    ``--version`` is prunecli's (Hydra would answer it with its own version)."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if "--version" in args and not ctx.resilient_parsing:  # resilient: shell completion, never exits
            _show_version(True)
        return super().parse_args(ctx, args)

    def format_help(self, ctx: Any, formatter: Any) -> None:
        super().format_help(ctx, formatter)
        from rich.console import Console
        from rich.table import Table

        table = Table(title="config groups (group=option)", title_justify="left", box=None, pad_edge=False)
        table.add_column("group", style="bold cyan")
        table.add_column("options (default in bold)")
        for group, (options, default) in config_groups(self.name or "").items():
            shown = [f"[bold]{o}[/]" if o == default else o for o in options]
            table.add_row(group, ", ".join(shown))
        Console().print(table)


def _complete_overrides(ctx: typer.Context, args: list[str], incomplete: str) -> list[str]:
    """Shell completion of overrides (``model=res<TAB>``), answered by Hydra's completion for this config."""
    from hydra import initialize_config_module
    from hydra._internal.core_plugins.bash_completion import BashCompletion
    from hydra.core.global_hydra import GlobalHydra

    name = ctx.command.name or ""
    words = args[args.index(name) + 1 :] if name in args else []  # what follows the subcommand
    with initialize_config_module(CONFIG_MODULE, version_base="1.3"):
        completion = BashCompletion(GlobalHydra.instance().config_loader())
        return completion._query(config_name=name, line=" ".join([*words, incomplete]))


def run_hydra(config_name: str, task: Any, overrides: list[str]) -> None:
    """Run ``task`` under ``hydra.main`` with ``overrides`` as its command line (``sys.argv`` restored after).

    With ``trainer.resume=<run dir>`` the killed run's saved overrides and run dir join the command line first
    (:func:`prunecli.commands.resume_command`). A launcher, sweeper or logger whose extra is not installed, or an
    unknown logger, is one ``error:`` line and exit code 2 (:func:`prunecli.commands.check_choices`).
    """
    import hydra

    from prunecli.commands import check_choices, resume_command
    from prunecli.errors import CheckpointError, ConfigError

    reject_keyless(overrides)
    overrides = [quote_home(word) for word in overrides]
    try:
        check_choices(overrides)  # a launcher, sweeper or logger whose extra is missing: one line, not Hydra's
        overrides = resume_command(overrides)
    except (ConfigError, CheckpointError) as err:
        print(f"error: {err}", file=sys.stderr)
        raise typer.Exit(2) from None
    main = hydra.main(config_path=f"pkg://{CONFIG_MODULE}", config_name=config_name, version_base="1.3")(task)
    saved = sys.argv
    sys.argv = [f"prunecli {config_name}", *overrides]
    try:
        main()
    finally:
        sys.argv = saved


def reject_keyless(overrides: list[str]) -> None:
    """``=0.5`` (no key) is one ``error:`` line and exit code 2.

    Hydra's override grammar accepts it as an override of the config group named ``""`` and then fails in
    the defaults list with a traceback (hydra 1.3).
    """
    from prunecli.commands import USER_ERROR_EXIT

    for word in overrides:
        if not word.startswith("-") and word.lstrip("+~").startswith("="):
            print(f"error: override {word!r} names no key: expected key=value (e.g. sparsity=0.5)",
                  file=sys.stderr)
            raise SystemExit(USER_ERROR_EXIT)


def quote_home(word: str) -> str:
    """``key=~/data`` as ``key='~/data'``: Hydra's override grammar has no unquoted ``~`` in values, and a shell
    leaves it unexpanded after ``=`` (zsh, ``sh``, a script's quotes). The path settings expand ``~`` themselves."""
    key, sep, value = word.partition("=")
    if sep and key and not key.startswith(("-", "~")) and (value == "~" or value.startswith("~/")):
        return f"{key}='{value}'" if "'" not in value else word
    return word


_OVERRIDES = typer.Argument(
    None, help="Hydra overrides: key=value, group=option, -m/--multirun, --cfg job, --info ...",
    autocompletion=_complete_overrides, show_default=False,
)


@app.command(cls=_HydraCommand, context_settings=_PASS_THROUGH)
def prune(overrides: Optional[list[str]] = _OVERRIDES) -> None:
    """Prune and fine-tune a model; writes checkpoint/, metrics.jsonl and summary.json to the run dir.

    [dim]prunecli prune model=resnet18 pruner=l1_norm sparsity=0.5[/]
    """
    from prunecli.commands.prune import prune as task

    run_hydra("prune", task, list(overrides or []))


@app.command(cls=_HydraCommand, context_settings=_PASS_THROUGH)
def evaluate(overrides: Optional[list[str]] = _OVERRIDES) -> None:
    """Accuracy, loss, per-layer sparsity, params, FLOPs and latency of a checkpoint; writes evaluate.json.

    [dim]prunecli evaluate checkpoint=outputs/prune/<date>/<time>[/]
    """
    from prunecli.commands.evaluate import evaluate as task

    run_hydra("evaluate", task, list(overrides or []))


@app.command(cls=_HydraCommand, context_settings=_PASS_THROUGH)
def export(overrides: Optional[list[str]] = _OVERRIDES) -> None:
    """Export a checkpoint: format=dense (safetensors, masks folded in), onnx (checked against PyTorch with
    onnxruntime) or compact (pruned channels and heads removed; needs pruner.target=channel or head).

    [dim]prunecli export checkpoint=outputs/prune/<date>/<time> format=onnx output=model.onnx[/]
    """
    from prunecli.commands.export import export as task

    run_hydra("export", task, list(overrides or []))


# prunecli.commands.USER_ERROR_EXIT, without importing Hydra (which report does not use) to read it
REPORT_USER_ERROR = 2


@app.command()
def report(
    dirs: list[str] = typer.Argument(..., help="A prune run dir, a multirun dir, or several dirs (evaluate run dirs "
                                     "too: matched to runs by checkpoint).", show_default=False),
    out: Optional[str] = typer.Option(None, "--out", "-o", help="Where to write (default: <first dir>/report)."),
    open_: bool = typer.Option(False, "--open", help="Open report.html in the default browser, if there is one."),
) -> None:
    """Plots and tables of what pruning did: report.html (self-contained), report.md and the PNGs.

    [dim]prunecli report outputs/prune/<date>/<time>   prunecli report multirun/prune/<date>/<time> --open[/]
    """
    from prunecli.errors import ConfigError
    from prunecli.report.plots import missing_extra

    missing = missing_extra()
    if missing:
        print(f"error: {missing}", file=sys.stderr)
        raise typer.Exit(REPORT_USER_ERROR)
    from prunecli.report.build import write_report

    try:
        path = write_report(dirs, out)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        raise typer.Exit(REPORT_USER_ERROR) from None
    typer.echo(f"report: {path}")
    if open_:
        open_in_browser(path)


def open_in_browser(path: Any) -> bool:
    """Open ``path`` in the default browser; False (and no error) where there is none."""
    import webbrowser

    try:
        return bool(webbrowser.open(path.resolve().as_uri()))
    except webbrowser.Error:
        return False


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
