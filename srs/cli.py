"""The ``srs`` command."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from srs import __version__
from srs.config import Settings, load_settings
from srs.errors import ConfigError

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="srs", description="SIPREC session recording server (RFC 7866)."
    )
    parser.add_argument("--version", action="version", version=f"srs {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the recording server")
    serve.add_argument("--config", type=Path, help="TOML settings file")
    serve.add_argument(
        "--no-auth",
        action="store_true",
        help="accept recording sessions without a credential (only the allow-list applies)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "serve":
        try:
            settings = load_settings(args.config)
        except ConfigError as exc:
            print(f"srs: configuration error: {exc}", file=sys.stderr)
            return 2
        return _serve(settings, no_auth=args.no_auth)
    return 2  # argparse rejects unknown commands before this


def _serve(settings: Settings, *, no_auth: bool) -> int:
    from srs.server import run

    return run(settings, no_auth=no_auth)
