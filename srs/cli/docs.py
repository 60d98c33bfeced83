"""The configuration reference, generated from the settings dataclasses.

``python -m srs.cli.docs`` prints the Markdown table that README.md carries between the
``<!-- config:begin -->`` and ``<!-- config:end -->`` markers; a test keeps the two equal.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import itertools
import textwrap
import typing

from srs import config

__all__ = ["config_reference", "field_docs"]


def field_docs(cls: type) -> dict[str, str]:
    """The string literal under each field of a dataclass body (its attribute docstring)."""
    definition = ast.parse(textwrap.dedent(inspect.getsource(cls))).body[0]
    if not isinstance(definition, ast.ClassDef):
        raise TypeError(f"{cls.__qualname__}: its source is no class definition")
    docs: dict[str, str] = {}
    for node, following in itertools.pairwise(definition.body):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(following, ast.Expr)
            and isinstance(following.value, ast.Constant)
            and isinstance(following.value.value, str)
        ):
            docs[node.target.id] = " ".join(following.value.value.split())
    return docs


def _show(value: object) -> str:
    if value is None:
        return "(none)"
    if isinstance(value, tuple):
        return "(empty)" if not value else ",".join(value)
    return str(value)


def config_reference() -> str:
    lines = [
        "| key | environment | default | meaning |",
        "| --- | --- | --- | --- |",
    ]
    for section, cls in typing.get_type_hints(config.Settings).items():
        docs = field_docs(cls)
        defaults = cls()
        for f in dataclasses.fields(cls):
            env = f"SRS_{section.upper()}_{f.name.upper()}"
            default = _show(getattr(defaults, f.name))
            lines.append(
                f"| `{section}.{f.name}` | `{env}` | `{default}` | {docs.get(f.name, '')} |"
            )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(config_reference(), end="")
