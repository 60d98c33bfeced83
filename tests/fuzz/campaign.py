"""A fuzz campaign: every target (or those named) for a number of inputs each.

    python -m tests.fuzz.campaign [--runs N] [--work DIR] [--merge] [TARGET ...]

Each target runs in its own process (tests/fuzz/run.py) from its seeds in
``tests/data/fuzz``; the campaign prints one line per target (inputs, coverage, speed) and
the total, and exits 1 if any target crashed, naming the input file libFuzzer wrote.
``--runs`` is per target, scaled by :data:`WEIGHTS` (the whole receive path costs about
ten times a parser per input).  ``--merge`` adds the inputs that reached new coverage to
the kept corpus as ``cov-*`` files, minimised by libFuzzer (``-merge=1``).

``make fuzz`` runs a campaign of over a million inputs; ``make test`` a short one
(tests/fuzz/test_fuzz.py).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from tests.fuzz.seeds import CORPUS
from tests.fuzz.targets import TARGETS

__all__ = ["Outcome", "WEIGHTS", "fuzz", "main"]

ROOT = Path(__file__).resolve().parent.parent.parent
# Relative cost per input; a target's runs are ``--runs`` divided by its weight.
WEIGHTS = {"receive": 10, "pcap": 2, "sip_stream": 2}
_DONE = re.compile(rb"#(\d+)\s+DONE\s+(?:cov: (\d+))?")
_PROGRESS = re.compile(rb"^#(\d+)\s", re.MULTILINE)  # libFuzzer's status lines, for a crash
_CRASH = re.compile(rb"Test unit written to (\S+)")


@dataclass(frozen=True)
class Outcome:
    target: str
    runs: int  # inputs libFuzzer reports it ran
    coverage: int  # instrumented edges reached
    seconds: float
    returncode: int
    crash: str | None  # the file holding the input that crashed
    output: str  # the tail of libFuzzer's output

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and self.crash is None


def fuzz(target: str, runs: int, work: Path, *, seed: int = 0, merge: bool = False,
         timeout_s: float = 3600.0) -> Outcome:
    """Run ``target`` (a name of :data:`TARGETS`, or ``module:function``) for ``runs``
    inputs, scratch files under ``work``."""
    scratch = work / target.replace(":", "_")
    scratch.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "tests.fuzz.run", target, str(scratch),
               f"-runs={runs}", f"-seed={seed}", f"-artifact_prefix={work}/",
               "-print_final_stats=0", "-rss_limit_mb=2048", "-timeout=30"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    started = time.monotonic()
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True,
                          timeout=timeout_s, check=False)
    seconds = time.monotonic() - started
    output = done.stdout + done.stderr
    matched = _DONE.search(output)
    crash = _CRASH.search(output)
    progress = _PROGRESS.findall(output)
    ran = int(matched.group(1)) if matched else int(progress[-1]) if progress else 0
    outcome = Outcome(target, ran,
                      int(matched.group(2) or 0) if matched else 0, seconds, done.returncode,
                      crash.group(1).decode() if crash else None,
                      output[-4000:].decode(errors="replace"))
    if merge and outcome.ok:
        _merge(target, scratch, env)
    return outcome


def _merge(target: str, scratch: Path, env: dict[str, str]) -> None:
    """Minimise what the run found into the kept corpus (libFuzzer ``-merge=1``)."""
    kept = CORPUS / target
    with tempfile.TemporaryDirectory() as fresh:
        subprocess.run([sys.executable, "-m", "tests.fuzz.run", target, fresh, "-merge=1",
                        str(kept), str(scratch)], cwd=ROOT, env=env, capture_output=True,
                       check=True)
        for path in Path(fresh).iterdir():
            shutil.copyfile(path, kept / f"cov-{path.name[:16]}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.fuzz.campaign")
    parser.add_argument("targets", nargs="*", metavar="TARGET",
                        help=f"any of: {', '.join(TARGETS)} (default: all)")
    parser.add_argument("--runs", type=int, default=150_000,
                        help="inputs per target, divided by its weight (150000)")
    parser.add_argument("--work", type=Path, default=None,
                        help="scratch directory (a temporary one, removed after)")
    parser.add_argument("--seed", type=int, default=0, help="libFuzzer's -seed (0: random)")
    parser.add_argument("--merge", action="store_true",
                        help="keep new-coverage inputs in tests/data/fuzz as cov-* files")
    args = parser.parse_args(argv)
    unknown = [t for t in args.targets if t not in TARGETS]
    if unknown:
        parser.error(f"unknown target(s) {', '.join(unknown)}; known: {', '.join(TARGETS)}")
    targets = args.targets or list(TARGETS)
    work = args.work or Path(tempfile.mkdtemp(prefix="srs-fuzz-"))
    total = 0
    failed = []
    try:
        for target in targets:
            runs = max(1, args.runs // WEIGHTS.get(target, 1))
            outcome = fuzz(target, runs, work, seed=args.seed, merge=args.merge)
            total += outcome.runs
            rate = outcome.runs / outcome.seconds if outcome.seconds else 0.0
            print(f"{target:12} {outcome.runs:>9,} inputs  cov {outcome.coverage:>5}  "
                  f"{outcome.seconds:7.1f} s  {rate:8,.0f}/s  "
                  f"{'ok' if outcome.ok else 'CRASH ' + str(outcome.crash)}", flush=True)
            if not outcome.ok:
                failed.append(outcome)
                print(outcome.output, file=sys.stderr)
    finally:
        if args.work is None and not failed:
            shutil.rmtree(work, ignore_errors=True)
    print(f"{'total':12} {total:>9,} inputs, {len(failed)} target(s) crashed")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
