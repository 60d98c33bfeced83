"""Coverage-guided fuzzing of one target with atheris (libFuzzer for Python).

    python -m tests.fuzz.run TARGET [WORK_DIR | INPUT_FILE] [libFuzzer flags...]

srs's modules are instrumented for coverage; the run starts from the seeds in
``tests/data/fuzz/TARGET`` and writes what it finds new to ``WORK_DIR`` (a scratch
directory, ``.fuzz/TARGET`` by default), never into the repository.  An unhandled
exception is a crash: libFuzzer writes the input as ``crash-<sha1>`` in the current
directory and exits non-zero.  Given a file instead, the target runs that one input (to replay a crash).
``-runs=N`` bounds the run by inputs, ``-max_total_time=S``
by time; ``make fuzz`` runs every target (tests/README.md, "Fuzzing").

libFuzzer prints ``#N DONE cov: ... exec/s: ...`` at the end; tests/fuzz/campaign.py reads
it to total the inputs of a campaign.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import atheris

with atheris.instrument_imports(include=["srs"]):
    from tests.fuzz.targets import TARGETS, Target

from tests.fuzz.seeds import CORPUS

__all__ = ["main"]

# Large enough for a multipart INVITE with metadata, small enough to stay fast; a UDP
# datagram is at most 65,535 bytes and the parsers' limits are tested in their own suites.
DEFAULT_MAX_LEN = 8192


def _target(name: str) -> Target | None:
    """A target of :data:`TARGETS`, or any ``module:function`` taking bytes (the
    campaign's own tests fuzz a target with a planted bug that way)."""
    if ":" not in name:
        return TARGETS.get(name)
    module, _, function = name.partition(":")
    with atheris.instrument_imports(include=["srs"]):
        found = getattr(importlib.import_module(module), function, None)
    return found if callable(found) else None


def main(argv: list[str]) -> int:
    target = _target(argv[1]) if len(argv) > 1 else None
    if target is None:
        print(f"usage: python -m tests.fuzz.run TARGET [WORK_DIR] [flags]; TARGET is one of "
              f"{', '.join(TARGETS)} or module:function", file=sys.stderr)
        return 2
    name = argv[1]
    rest = argv[2:]
    first = Path(rest.pop(0)) if rest and not rest[0].startswith("-") else None
    if first is not None and first.is_file():
        inputs = [str(first)]  # one input (a crash) run once, as libFuzzer does with a file
    else:
        work = first or Path(".fuzz") / name
        work.mkdir(parents=True, exist_ok=True)
        seeds = CORPUS / name
        inputs = [str(work), *([str(seeds)] if seeds.is_dir() else [])]
    flags = rest if any(f.startswith("-max_len=") for f in rest) else [
        *rest, f"-max_len={DEFAULT_MAX_LEN}"]
    atheris.Setup([argv[0], *flags, *inputs], target)
    atheris.Fuzz()
    return 0  # not reached: libFuzzer exits the process


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
