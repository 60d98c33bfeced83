"""The fuzz targets in ``make test``: every kept input, a short coverage-guided campaign,
and proof that the campaign reports what it finds.  The long run is ``make fuzz``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

try:
    import atheris
except ImportError:  # no wheel for this platform (pyproject.toml): no campaigns here
    atheris = None

from tests.fuzz import targets
from tests.fuzz.campaign import ROOT, WEIGHTS, fuzz
from tests.fuzz.seeds import CORPUS, build

# A short run per target: a few seconds each, new inputs every time (libFuzzer's seed is
# random), so ``make test`` keeps looking a little on every run.
SHORT_RUNS = 3000


def planted_bug(data: bytes) -> None:
    """A target that fails on inputs starting with ``S``: the campaign must say so."""
    if data[:1] == b"S":
        raise IndexError("planted")


@pytest.mark.parametrize("target", list(targets.TARGETS))
def test_every_kept_input_is_handled(target: str) -> None:
    kept = sorted((CORPUS / target).iterdir())
    assert kept, f"no corpus for {target}: run python -m tests.fuzz.seeds"
    run = targets.TARGETS[target]
    for path in kept:
        run(path.read_bytes())


def test_the_kept_seeds_are_the_ones_the_builder_makes() -> None:
    for target, seeds in build().items():
        assert len(seeds) == len(list((CORPUS / target).glob("seed-*"))), target


def test_the_receive_seed_records_a_call(tmp_path: Path) -> None:
    """The receive target's seeds reach the recording core: a session with audio."""
    host = targets._fresh_host()
    [first, *_] = build()["receive"]
    targets.receive(first)
    [directory] = host.sessions()
    doc = json.loads((directory / "session.json").read_text())
    assert (doc["status"], doc["end_reason"]) == ("complete", "bye")  # in-dialog BYE matched
    inbound = next(s for s in doc["streams"] if s["label"] == "inbound")
    assert inbound["packets"]["received"] >= 10
    assert inbound["packets"]["dropped"].get("foreign_source") == 3  # the off-path packets
    assert (directory / "inbound.wav").stat().st_size > 44 + 10 * 160


needs_atheris = pytest.mark.skipif(atheris is None, reason="atheris is not installed here")


@needs_atheris
@pytest.mark.parametrize("target", list(targets.TARGETS))
def test_a_short_campaign_finds_nothing(target: str, tmp_path: Path) -> None:
    runs = max(100, SHORT_RUNS // WEIGHTS.get(target, 1))
    outcome = fuzz(target, runs, tmp_path, timeout_s=240)
    assert outcome.ok, outcome.output
    assert outcome.runs == runs
    assert outcome.coverage > 20, outcome.output  # srs's code is instrumented


@needs_atheris
def test_a_campaign_reports_a_crash_and_keeps_the_input(tmp_path: Path) -> None:
    outcome = fuzz("tests.fuzz.test_fuzz:planted_bug", 200_000, tmp_path, seed=1,
                   timeout_s=120)
    assert not outcome.ok
    assert outcome.crash is not None and "IndexError: planted" in outcome.output
    assert Path(outcome.crash).read_bytes()[:1] == b"S"


@needs_atheris
def test_a_kept_failure_replays_from_its_file(tmp_path: Path) -> None:
    crash = tmp_path / "crash-1"
    crash.write_bytes(b"S and the rest")
    done = subprocess.run([sys.executable, "-m", "tests.fuzz.run",
                           "tests.fuzz.test_fuzz:planted_bug", str(crash)],
                          cwd=ROOT, capture_output=True, check=False, timeout=60)
    assert done.returncode != 0 and b"IndexError: planted" in done.stdout + done.stderr
    harmless = tmp_path / "fine"
    harmless.write_bytes(b"not S")
    done = subprocess.run([sys.executable, "-m", "tests.fuzz.run",
                           "tests.fuzz.test_fuzz:planted_bug", str(harmless)],
                          cwd=ROOT, capture_output=True, check=False, timeout=60)
    assert done.returncode == 0, done.stderr
