"""deploy/srs.env.example, generated from the settings tree like the README's table.

``python -m tests.deploy.envfile > deploy/srs.env.example`` rewrites it after a setting
is added, renamed or documented differently; test_files.py keeps the two equal.
"""

from __future__ import annotations

import dataclasses
import textwrap
import typing

from srs import config
from srs.cli.docs import field_docs  # the attribute docstrings the README table is built from

__all__ = ["env_example"]

HEADER = """\
# srs settings as environment variables: an env file for `docker compose` (env_file:),
# systemd (EnvironmentFile=/etc/srs/srs.env) or `set -a; . ./srs.env; set +a`.
# Every setting is here with its default, commented out: uncomment what you change.
# The same settings can come from a TOML file (srs serve --config); these win over it.
# Lists are comma-separated.  An empty value means "none" or "empty".
#
# Generated from srs/config/: python -m tests.deploy.envfile > deploy/srs.env.example
"""


def _value(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return ",".join(value)
    return str(value)


def env_example() -> str:
    parts = [HEADER]
    for section, cls in typing.get_type_hints(config.Settings).items():
        docs = field_docs(cls)
        defaults = cls()
        parts.append(f"\n# [{section}]\n")
        for f in dataclasses.fields(cls):
            doc = docs.get(f.name, "").replace("``", "`")
            parts.extend(f"# {line}\n" for line in textwrap.wrap(doc, width=88))
            name = f"{config.ENV_PREFIX}{section.upper()}_{f.name.upper()}"
            parts.append(f"#{name}={_value(getattr(defaults, f.name))}\n")
    return "".join(parts)


if __name__ == "__main__":
    print(env_example(), end="")
