"""Finished (and unfinished) session directories on disk, for the ops tests."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

from srs.recording.layout import session_dir_name
from srs.recording.sidecar import EndReason, SessionStatus, write_sidecar
from tests.recording.sidecars import twilio_sidecar


def make_session(recordings: Path, started_at: datetime, *, status: str = "complete",
                 name: str = "CA1", audio_bytes: int = 1000) -> Path:
    """A session directory as srs leaves it: a sidecar with ``status`` and a WAV file."""
    directory = recordings / started_at.strftime("%Y/%m/%d") / session_dir_name(started_at, name)
    directory.mkdir(parents=True)
    sidecar = replace(twilio_sidecar(), started_at=started_at)
    if status != "recording":
        sidecar = replace(sidecar, status=SessionStatus(status),
                          ended_at=started_at + timedelta(minutes=5), end_reason=EndReason.BYE,
                          error="disk full" if status == "failed" else None)
    write_sidecar(directory / "session.json", sidecar)
    (directory / "inbound_track.wav").write_bytes(b"\0" * audio_bytes)
    return directory
