"""The ``srs`` command.

Each subcommand lives in its own module ``srs.cli.<name>`` with two functions:
``add_arguments(parser)`` and ``run(args) -> int`` (the exit code), plus a ``HELP`` line.
``serve`` is here; the others are found by name, so a command is added by adding its
module and its name to ``COMMANDS``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

from srs import __version__
from srs.config import Settings, load_settings
from srs.errors import ConfigError

__all__ = ["main", "COMMANDS"]

# Subcommands with a module of their own (srs/cli/<name>.py).
COMMANDS = ("call", "replay", "firewall")


def _serve_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="TOML settings file")
    parser.add_argument(
        "--no-auth",
        action="store_true",
        help="accept recording sessions without a credential (only the allow-list applies)",
    )


def _serve(args: argparse.Namespace) -> int:
    try:
        settings: Settings = load_settings(args.config)
    except ConfigError as exc:
        print(f"srs: configuration error: {exc}", file=sys.stderr)
        return 2
    from srs.server.serve import run

    return run(settings, no_auth=args.no_auth)


def _command_modules() -> dict[str, ModuleType]:
    found = {}
    for name in COMMANDS:
        try:
            found[name] = importlib.import_module(f"srs.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"srs.cli.{name}":
                raise  # the module exists but something it imports is missing: a bug
    return found


def _parser(modules: dict[str, ModuleType]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="srs", description="SIPREC session recording server (RFC 7866)."
    )
    parser.add_argument("--version", action="version", version=f"srs {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = commands.add_parser("serve", help="run the recording server")
    _serve_arguments(serve)
    serve.set_defaults(run=_serve)
    for name, module in modules.items():
        sub = commands.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(sub)
        sub.set_defaults(run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser(_command_modules()).parse_args(argv)
    return int(args.run(args))
