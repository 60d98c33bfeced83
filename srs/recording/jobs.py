"""Every piece of file work a recording session does, in one place.

The recording core (:mod:`srs.recording.core`) decides *what* to write and describes it as
one of these jobs; a driver runs :meth:`run` where blocking is harmless (the live server in
a worker thread, a replay inline) and hands the result back to the core.  Jobs of one
session never overlap: the core waits for each before it issues the next, so a job may
touch that session's files and :class:`StreamOutput` objects freely.

A job raises :class:`~srs.recording.wav.RecordingIOError` when the storage fails; the
core turns that into a failed session (docs/architecture.md, "Error model").  No asyncio,
no logging.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from srs.codecs import Codec
from srs.recording import sidecar as sc
from srs.recording.capture import CaptureRecord, SessionCapture
from srs.recording.layout import SessionLayout, create_session_dir, write_metadata
from srs.recording.mix import MixResult, mix_stereo
from srs.recording.output import StreamOutput
from srs.recording.stream import CodecSwitch, OutputReport
from srs.recording.wav import RecordingIOError
from srs.rtp.track import Placed

__all__ = [
    "DiscardFiles",
    "FailFiles",
    "FileJob",
    "FinishFiles",
    "FinishedFiles",
    "OpenOutputs",
    "OutputSpec",
    "SessionFiles",
    "SetUpFiles",
    "WriteBatch",
    "WriteMetadata",
    "WriteSidecar",
    "report_of",
]


def report_of(output: StreamOutput, *, final: bool = False) -> OutputReport:
    """What the sidecar says of a stream's file (``final``: closed, so also its hash)."""
    return OutputReport(
        file=output.path.name,
        duration_s=output.writer.duration_s,
        trimmed_samples=output.assembler.trimmed_samples,
        decode_errors=output.assembler.decode_errors,
        dtmf=tuple(output.dtmf_events),
        dtmf_dropped=output.dtmf_dropped,
        failed=output.failed,
        sha256=sc.sha256_file(output.path) if final and output.failed is None else None,
    )


@dataclass(frozen=True, slots=True)
class WriteMetadata:
    """``metadata-N.xml``: one raw RFC 7865 version as received."""

    layout: SessionLayout
    n: int
    raw: bytes

    def run(self) -> None:
        write_metadata(self.layout, self.n, self.raw)


@dataclass(frozen=True, slots=True)
class OutputSpec:
    """A stream's WAV file: ``<stem>.wav`` in the session directory."""

    stem: str
    decoders: Mapping[int, Codec]
    clock_rate_hz: int
    sample_rate_hz: int | None = None  # None: the clock rate
    # Payload types whose a=rtpmap rate is not the track's (telephone-event/8000 by Opus).
    clock_rates_hz: Mapping[int, int] | None = None


@dataclass(frozen=True, slots=True)
class OpenOutputs:
    """Open the WAV files of newly answered streams."""

    layout: SessionLayout
    specs: tuple[OutputSpec, ...]

    def run(self) -> dict[str, StreamOutput]:
        opened: dict[str, StreamOutput] = {}
        try:
            for spec in self.specs:
                output = StreamOutput(self.layout.stream_wav(spec.stem), spec.decoders,
                                      spec.clock_rate_hz,
                                      spec.sample_rate_hz or spec.clock_rate_hz,
                                      spec.clock_rates_hz)
                output.label = spec.stem
                opened[spec.stem] = output
        except BaseException:
            for output in opened.values():
                _close_quietly(output)
            raise
        return opened


@dataclass(frozen=True, slots=True)
class SessionFiles:
    """What :class:`SetUpFiles` made: the directory (None when even that failed), the
    opened WAVs, and the exception that stopped it part way, if one did."""

    layout: SessionLayout | None
    outputs: dict[str, StreamOutput]
    error: Exception | None


@dataclass(frozen=True, slots=True)
class SetUpFiles:
    """A new session's files in one job, so a set-up leaves the event loop once: the
    directory, the raw metadata (``metadata``: N and the bytes), the WAVs, and the durable
    ``session.json`` that start-up repair finds (it exists before the 200 OK is sent).

    A failure part way is returned, not raised, with what was made by then: the core
    raises it in the set-up, where it is classified as every failure is, and marks the
    directory failed (or removes it) and closes the WAVs itself."""

    recordings_dir: Path
    started_at: datetime
    session_id: str
    metadata: tuple[tuple[int, bytes], ...]
    outputs: tuple[OutputSpec, ...]
    sidecar: sc.SessionSidecar

    def run(self) -> SessionFiles:
        try:
            layout = create_session_dir(self.recordings_dir, self.started_at, self.session_id)
        except Exception as exc:  # handed to the core, which classifies it
            return SessionFiles(None, {}, exc)
        opened: dict[str, StreamOutput] = {}
        try:
            for n, raw in self.metadata:
                write_metadata(layout, n, raw)
            opened = OpenOutputs(layout, self.outputs).run()  # closes its own on failure
            sc.write_sidecar(layout.sidecar, self.sidecar, durable=True)
        except Exception as exc:  # handed to the core, which classifies it
            return SessionFiles(layout, opened, exc)
        return SessionFiles(layout, opened, None)


@dataclass(frozen=True, slots=True)
class WriteSidecar:
    """``session.json`` replaced atomically; ``durable``: and synced to the disk (every
    change of signalling or status), else only the rename (a tick's counters: a killed
    process still leaves the old file or the new one, never a torn one)."""

    path: Path
    record: sc.SessionSidecar
    durable: bool = True

    def run(self) -> None:
        sc.write_sidecar(self.path, self.record, durable=self.durable)


@dataclass(frozen=True, slots=True)
class WriteBatch:
    """A tick's writes: each stream up to its window, the capture, maybe the sidecar."""

    # output, the codec switches before the batch, batch, horizon, floor
    writes: tuple[tuple[StreamOutput, tuple[CodecSwitch, ...], list[Placed], int, int], ...]
    capture: SessionCapture | None
    captured: list[CaptureRecord]
    sidecar: WriteSidecar | None

    def run(self) -> dict[str, OutputReport]:
        for output, switches, batch, horizon, floor in self.writes:
            for switch in switches:
                output.switch(switch)
            output.write(batch, horizon, floor)
        if self.captured and self.capture is not None:
            self.capture.write(self.captured)
        if self.sidecar is not None:
            self.sidecar.run()
        return {_stem(output): report_of(output) for output, *_ in self.writes}


@dataclass(frozen=True, slots=True)
class FinishedFiles:
    reports: dict[str, OutputReport]
    mix: sc.MixRecord | None
    mix_skipped: str | None


@dataclass(frozen=True, slots=True)
class FinishFiles:
    """The end of a session: every track to the session's length, the files closed, the
    capture closed, the stereo mix of ``mix`` (left, right) when both files are whole."""

    # output, the codec switches before the batch, batch, total
    finishes: tuple[tuple[StreamOutput, tuple[CodecSwitch, ...], list[Placed], int], ...]
    capture: SessionCapture | None
    captured: list[CaptureRecord]
    mix: tuple[StreamOutput, StreamOutput, Path] | None

    def run(self) -> FinishedFiles:
        for output, switches, batch, _ in self.finishes:
            for switch in switches:
                output.switch(switch)
            output.add_last(batch)
        # Every track ends at the session's end, plus the longest tail any track's last
        # packet has past it (output.TAIL_GRACE_S): the tracks keep one length.
        tail_s = max((output.tail_s(total) for output, _, _, total in self.finishes),
                     default=0.0)
        for output, _, _, total in self.finishes:
            output.finish(total + round(tail_s * output.assembler.clock_rate_hz))
        if self.capture is not None:
            self.capture.write(self.captured)
            self.capture.close()
        mix, skipped = None, None
        if self.mix is not None:
            left, right, path = self.mix
            if left.failed is None and right.failed is None:
                result = mix_stereo(left.path, right.path, path)
                if isinstance(result, MixResult):
                    mix = sc.MixRecord(file=result.path.name, channels=(_stem(left), _stem(right)),
                                       sha256=sc.sha256_file(result.path))
                else:
                    skipped = result.reason
        reports = {_stem(output): report_of(output, final=True) for output, *_ in self.finishes}
        return FinishedFiles(reports, mix, skipped)


@dataclass(frozen=True, slots=True)
class FailFiles:
    """Storage failed (or a bug): close what can be closed, mark the session failed.
    Returns the sidecar's own write error, if that failed too."""

    outputs: tuple[StreamOutput, ...]
    capture: SessionCapture | None
    sidecar: WriteSidecar

    def run(self) -> str | None:
        for output in self.outputs:
            _close_quietly(output)  # the disk is the problem; the other files may still close
        if self.capture is not None:
            self.capture.close()
        try:
            self.sidecar.run()
        except (RecordingIOError, OSError) as exc:
            return str(exc)
        return None


@dataclass(frozen=True, slots=True)
class DiscardFiles:
    """A session that never started (rejected or cancelled): remove its files."""

    outputs: tuple[StreamOutput, ...]
    capture: SessionCapture | None
    directory: Path | None

    def run(self) -> None:
        for output in self.outputs:
            _close_quietly(output)
        if self.capture is not None:
            self.capture.close()
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)


FileJob = (SetUpFiles | WriteMetadata | OpenOutputs | WriteSidecar | WriteBatch
           | FinishFiles | FailFiles | DiscardFiles)


def _stem(output: StreamOutput) -> str:
    return output.label or output.path.stem


def _close_quietly(output: StreamOutput) -> None:
    with contextlib.suppress(RecordingIOError, OSError):
        output.writer.close()


def run_job(job: FileJob) -> Any:
    """Run ``job`` (blocking); what it returns goes back to the core."""
    return job.run()
