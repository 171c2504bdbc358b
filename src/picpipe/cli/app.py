"""Typer root: global options, logging setup, ``--json`` plumbing, errors → exit codes."""

from __future__ import annotations

import functools
import json
import logging
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.text import Text

from picpipe import __version__
from picpipe.errors import ExitCode, PicpipeError
from picpipe.logs import setup_logging

if TYPE_CHECKING:
    from picpipe.config import Settings

log = logging.getLogger(__name__)
P = ParamSpec("P")
R = TypeVar("R")

app = typer.Typer(
    name="picpipe",
    help="One authoritative photo pipeline: sources in, a verified deduplicated library out.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
# emoji=False: a folder named `smile:thumbs_up:` prints as is (markup=False alone keeps codes).
console = Console(stderr=False, highlight=False, soft_wrap=True, emoji=False)
err_console = Console(stderr=True, highlight=False, soft_wrap=True, emoji=False)


@dataclass(slots=True)
class CliState:
    """Global options, turned into settings on first use (so --help needs no config)."""

    flags: dict[str, Any]
    _settings: Settings | None = None
    config_may_be_missing: bool = False  # init creates the file --config names

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            from picpipe.config import load_settings  # pydantic-settings: only when needed

            self._settings = load_settings(
                config_may_be_missing=self.config_may_be_missing, **self.flags
            )
            setup_logging(self.flags.get("log_level") or self._settings.log_level)
        return self._settings


def _plain_help_types() -> None:
    """Help lists ``--json``, not ``--json <bool>``, and ``paths...`` without ``<list[str]>``.

    Typer prints every parameter's Python type in the rich help; for flags and arguments
    that says nothing a user needs (the values an option takes still show, e.g. ``<path>``).
    """
    from typer.core import TyperArgument, TyperOption

    option_type = TyperOption.display_type_rich

    def option_display(self: TyperOption, ctx: Any) -> str | None:
        if self.is_flag:
            return None
        shown = option_type(self, ctx)
        if shown and shown.startswith("<list[") and shown.endswith("]>"):
            shown = f"<{shown[6:-2]}>..."  # repeatable: `-d nas -d cloud`
        return shown.replace("<str>", "<text>") if shown else shown

    def argument_display(self: TyperArgument, ctx: Any) -> str | None:
        return None

    TyperOption.display_type_rich = option_display  # type: ignore[method-assign]
    TyperArgument.display_type_rich = argument_display  # type: ignore[method-assign,assignment]


_plain_help_types()


def _version(value: bool) -> None:
    if value:
        typer.echo(f"picpipe {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    home: Path | None = typer.Option(
        None, "--home", help="Local root: config, catalog, thumbnails, cache [PICPIPE_HOME]."
    ),
    library: Path | None = typer.Option(
        None, "--library", help="Library root for originals, often a NAS mount [PICPIPE_LIBRARY]."
    ),
    config: Path | None = typer.Option(
        None, "--config", help="Config file (default $PICPIPE_HOME/config.yaml) [PICPIPE_CONFIG]."
    ),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log per-file detail."),
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Show the version and exit."
    ),
) -> None:
    """picpipe keeps one verified, deduplicated, date-organised photo library."""
    ctx.obj = CliState(
        flags={
            "home": home,
            "library": library,
            "config": config,
            "log_level": "DEBUG" if verbose else None,
        }
    )


def state(ctx: typer.Context) -> CliState:
    obj = ctx.find_root().obj
    assert isinstance(obj, CliState)
    return obj


def reports_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Render picpipe errors as one line on stderr and exit with the error's code."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except PicpipeError as exc:
            log.debug("command failed", exc_info=True)
            # The message is text: a path or pattern with [brackets] or :emoji: prints as is.
            line = Text("error:", style="bold red")
            line.append(f" {exc.message}")
            err_console.print(line, emoji=False)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            err_console.print("interrupted")
            raise typer.Exit(130) from None

    return wrapper


def emit_json(data: Any) -> None:
    """Print ``data`` as JSON on stdout (the only thing on stdout with --json)."""
    sys.stdout.write(json.dumps(data, indent=2, default=str, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def print_failures(
    failures: list[dict[str, str]], *, limit: int = 50, roots: dict[str, str] | None = None
) -> None:
    """The first ``limit`` failed items with their reasons (all of them are in --json).

    With ``roots`` (source name → folder), ``source:ref`` paths are printed as local paths,
    shell-quoted so that a line can be pasted into a shell.
    """
    from picpipe.cli.report_text import failure_path

    for failure in failures[:limit]:
        path = failure_path(failure["path"], roots) if roots is not None else failure["path"]
        console.print(f"  failed  {path}  {failure['reason']}", markup=False)
    if len(failures) > limit:
        console.print(f"  … and {len(failures) - limit} more (see --json)")


def sigterm_interrupts() -> Any:
    """Make SIGTERM (a service stop) raise KeyboardInterrupt so a run ends cleanly.

    Returns the previous handler, for ``signal.signal(signal.SIGTERM, previous)``.
    """
    return signal.signal(signal.SIGTERM, _interrupt)


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def human_bytes(n: int | float) -> str:
    value = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} TB"


# The module that registers each command, in the order help lists them. `main` imports only
# the module of the command a command line names: importing every command's dependencies
# (SQLAlchemy, the cloud SDKs, FastAPI) was most of a quick command's time. Help, no command
# and an unknown name load them all. tests/cli/test_cli.py checks the table against the modules.
COMMAND_MODULES: dict[str, str] = {
    "init": "imports",
    "import": "imports",
    "status": "info",
    "sessions": "info",
    "sources": "info",
    "stats": "info",
    "config": "info",
    "verify": "verify",
    "repair": "repair",
    "sidecars": "sidecars",
    "thumbs": "thumbs",
    "sync": "sync",
    "replicas": "sync",
    "test-connection": "sync",
    "serve": "serve",
    "views": "views",
    "consumers": "views",
    "duplicates": "duplicates",
    "cards": "cards",
    "restore-catalog": "restore",
    "watch": "watch",
    "start": "start",
}
_REGISTERED: set[str] = set()
# Global options that take a value: the word after them is not the command.
_VALUED_OPTIONS = frozenset({"--home", "--library", "--config"})


def register_modules(*modules: str) -> None:
    """Add the commands of ``modules`` (``picpipe.cli.<name>``) to `app`, each once."""
    import importlib

    for module in modules:
        if module not in _REGISTERED:
            importlib.import_module(f"picpipe.cli.{module}").register(app)
            _REGISTERED.add(module)


def register_all() -> None:
    register_modules(*dict.fromkeys(COMMAND_MODULES.values()))


def command_named(argv: list[str]) -> str | None:
    """The command word of a command line (after the global options), None without one."""
    words = iter(argv)
    for word in words:
        if word in _VALUED_OPTIONS:
            next(words, None)
        elif not word.startswith("-"):
            return word
    return None


def main() -> None:
    """Console-script entry point."""
    command = command_named(sys.argv[1:])
    if command in COMMAND_MODULES:
        register_modules(COMMAND_MODULES[command])
    elif command is not None or "--version" not in sys.argv[1:]:
        register_all()  # help lists every command; a misspelt one gets suggestions
    try:
        app()
    except PicpipeError as exc:  # raised before a command ran (e.g. settings)
        err_console.print(f"error: {exc.message}", markup=False, emoji=False)
        sys.exit(exc.exit_code)
    except Exception:
        log.exception("internal error")
        sys.exit(ExitCode.INTERNAL)
