"""The folder tree is the architecture (docs/architecture.md, "Layers"): checked here.

Every import of every module under ``srs/`` is read from its source (function-level
imports too), so a pure module that reaches for asyncio, the logger or an outer layer
fails this test before it fails a review.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRS = Path(__file__).resolve().parents[1] / "srs"

# The pure core: protocol and media code that takes bytes and ``now`` in and hands back
# values; no event loop, no logger, and nothing of the layers that drive it.
PURE = ("sip", "sdp", "siprec", "rtp", "codecs", "capture", "recording",
        "replay/messages.py", "replay/plan.py", "live/feed.py", "live/formats.py", "live/urls.py",
        "live/ulaw.py")
# Shells inside pure packages: the asyncio transport of the SIP core.
SHELLS = ("sip/transport.py",)
FORBIDDEN_IN_PURE = ("asyncio", "logging", "structlog", "uvloop", "srs.log", "srs.server",
                     "srs.ops", "srs.cli", "srs.client", "srs.replay.offline",
                     "srs.replay.sender")
# Which srs packages each layer may use; the cross-cutting modules (errors, config, log)
# are open to every layer except as FORBIDDEN_IN_PURE says.
ALLOWED = {
    "codecs": set(),
    "sdp": set(),
    "siprec": {"sip"},
    "sip": set(),
    "rtp": {"codecs", "sdp"},
    "capture": {"sip"},
    "recording": {"sip", "sdp", "siprec", "rtp", "codecs", "capture"},
}
TOP_LEVEL_MODULES = {"__init__.py", "__main__.py", "errors.py", "log.py"}  # and config/, a package
MAX_MODULE_LINES = 620


def modules() -> list[Path]:
    return sorted(SRS.rglob("*.py"))


def relative(path: Path) -> str:
    return path.relative_to(SRS).as_posix()


def imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module is not None and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def is_pure(path: Path) -> bool:
    name = relative(path)
    return name not in SHELLS and any(name == p or name.startswith(p + "/") for p in PURE)


def test_the_pure_list_names_real_places() -> None:
    for place in (*PURE, *SHELLS):
        assert (SRS / place).exists(), place
    assert sum(is_pure(p) for p in modules()) > 50


@pytest.mark.parametrize("path", [p for p in modules() if is_pure(p)], ids=relative)
def test_pure_modules_import_no_event_loop_logger_or_outer_layer(path: Path) -> None:
    bad = sorted(name for name in imports(path)
                 if any(name == f or name.startswith(f + ".") for f in FORBIDDEN_IN_PURE))
    assert bad == [], f"{relative(path)} imports {bad}"


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_each_core_layer_uses_only_the_layers_below_it(layer: str) -> None:
    for path in (SRS / layer).rglob("*.py"):
        if relative(path) in SHELLS:
            continue
        used = {name.split(".")[1] for name in imports(path)
                if name.startswith("srs.") and len(name.split(".")) > 1}
        used -= {"errors", "config", layer, "__init__"}
        assert used <= ALLOWED[layer], f"{relative(path)} uses {sorted(used - ALLOWED[layer])}"


def test_the_top_level_holds_packages_and_at_most_four_modules() -> None:
    top = {p.name for p in SRS.glob("*.py")}
    assert top == TOP_LEVEL_MODULES


def test_no_module_grows_past_the_size_a_reader_can_hold() -> None:
    long = {relative(p): n for p in modules()
            if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES}
    assert long == {}


def test_nothing_names_a_file_outside_the_repository() -> None:
    pyproject = SRS.parent / "pyproject.toml"
    for path in [*modules(), pyproject]:
        text = path.read_text()
        assert "DESIGN.md" not in text and "../shared" not in text, path
