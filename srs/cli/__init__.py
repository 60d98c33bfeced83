"""The ``srs`` command: one module per subcommand (see :mod:`srs.cli.main`)."""

from srs.cli.main import main

__all__ = ["main"]
