"""``session.json``: what srs knows about one recording, next to its audio.

The sidecar exists from the moment the session starts (status ``recording``) and is
rewritten atomically on every change, so a reader never sees half a file and a crash
leaves the last complete version.  ``srs/schemas/session.schema.json`` (JSON Schema
2020-12, shipped in the package) describes it for consumers; the dataclasses here are the
only producer.

Values only: typed frozen dataclasses until :meth:`SessionSidecar.to_dict`, the JSON
boundary.  Text that came from the network is cut to :data:`MAX_TEXT_CHARS` there, and at
most :data:`MAX_CUSTOM_PARAMETERS` custom parameters are kept, so a sidecar stays small.
No SRTP key ever enters the model: a stream carries the suite name only.

No asyncio, no logging: the asyncio shell calls these in a worker thread and logs.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields, is_dataclass
from datetime import UTC, datetime
from enum import StrEnum
from importlib import resources
from pathlib import Path
from typing import Any, Final

from srs.errors import UsageError
from srs.recording.files import FILE_MODE, create_temporary
from srs.recording.layout import is_safe_name
from srs.recording.wav import (
    RecordingFormatError,
    RecordingIOError,
    fsync_directory,
    unlink_if_present,
    write_all,
)

__all__ = [
    "SCHEMA_VERSION",
    "MAX_TEXT_CHARS",
    "MAX_CUSTOM_PARAMETERS",
    "MAX_SIDECAR_BYTES",
    "SessionStatus",
    "EndReason",
    "Source",
    "SiprecIds",
    "TwilioIds",
    "Participant",
    "PacketCounts",
    "StreamRecord",
    "MixRecord",
    "MetadataUpdate",
    "DtmfEvent",
    "StreamOut",
    "SessionSidecar",
    "SidecarFormatError",
    "format_time",
    "load_session_schema",
    "read_sidecar",
    "sha256_file",
    "write_sidecar",
]

SCHEMA_VERSION: Final = "srs-session/1"
MAX_TEXT_CHARS: Final = 1024
MAX_CUSTOM_PARAMETERS: Final = 100
MAX_SIDECAR_BYTES: Final = 4 * 1024 * 1024
_HASH_CHUNK_BYTES: Final = 1024 * 1024
# Suite names as in RFC 4568 §6.2 and RFC 7714 §14.2; a key (base64, RFC 4568 §9.2) has
# lower-case letters, '+', '/' or '=' and so can never pass.
_SRTP_SUITE = re.compile(r"[A-Z0-9_]{1,40}")
# RFC 4733 §3.2: events 0-15 are 0-9 * # A-D; 16 is flash.
_DTMF_DIGITS: Final = frozenset("0123456789*#ABCD") | {"flash"}
_SIP_METHOD = re.compile(r"[A-Z]{1,20}")
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
_U32_MAX: Final = 0xFFFF_FFFF


class SessionStatus(StrEnum):
    RECORDING = "recording"
    COMPLETE = "complete"
    INTERRUPTED = "interrupted"  # the server stopped without finalising; set by repair
    FAILED = "failed"  # a disk error or a bug ended the recording; see ``error``


class EndReason(StrEnum):
    BYE = "bye"
    TIMEOUT = "timeout"  # no media and no refresh within the configured time
    SHUTDOWN = "shutdown"  # srs was asked to stop and finalised the session
    ERROR = "error"
    CRASH = "crash"  # srs died (kill -9, power loss); found and repaired at start-up


class SidecarFormatError(RecordingFormatError):
    """A ``session.json`` on disk that is not a sidecar this version can read."""


@dataclass(frozen=True, slots=True)
class Source:
    """Where the dialog-creating INVITE came from."""

    address: str
    port: int
    transport: str  # "udp" | "tcp" | "tls"

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 0xFFFF or self.transport not in ("udp", "tcp", "tls"):
            raise UsageError(f"source port {self.port} / transport {self.transport!r}")


@dataclass(frozen=True, slots=True)
class SiprecIds:
    """RFC 7865 §6.1/§6.2 ids from the metadata, base64 as sent."""

    session_id: str | None = None
    group_id: str | None = None


@dataclass(frozen=True, slots=True)
class TwilioIds:
    """``X-Twilio-CallSid`` / ``X-Twilio-AccountSid`` when the client is Twilio."""

    call_sid: str | None = None
    account_sid: str | None = None


@dataclass(frozen=True, slots=True)
class Participant:
    """RFC 7865 §6.5 participant; ``sends`` holds the labels of the streams it sends."""

    id: str
    name: str | None = None
    aor: str | None = None
    sends: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class PacketCounts:
    """RTP packet counters of one stream; ``dropped`` counts by drop reason."""

    received: int = 0
    lost: int = 0
    duplicated: int = 0
    reordered: int = 0
    late: int = 0
    dropped: Mapping[str, int] = field(default_factory=dict)
    rtcp: int = 0
    """RTCP (or SRTCP) packets received on the stream's port: counted, never audio."""
    unoffered_static: int = 0
    """PCMU/PCMA packets recorded although the m-line did not offer them (RFC 3551 §6)."""

    def __post_init__(self) -> None:
        counts = (self.received, self.lost, self.duplicated, self.reordered, self.late, self.rtcp,
                  self.unoffered_static)
        if min(counts) < 0 or any(n < 0 for n in self.dropped.values()):
            raise UsageError(f"packet counts must not be negative: {self}")


@dataclass(frozen=True, slots=True)
class StreamRecord:
    """One recorded stream (one m-line, RFC 4574 label) and its mono WAV file.

    ``label`` is the ``a=label`` text, or ``stream-N`` for an m-line without one; labels are
    unique within a session.  ``sha256`` is null until the file is final.
    """

    label: str
    file: str
    codec: str
    clock_rate: int
    sample_rate: int | None = None
    """The WAV's rate (G.722: 16000 under an 8000 RTP clock); null in sidecars from
    before it was recorded, whose WAVs are at ``clock_rate``."""
    srtp: str | None = None
    participant: str | None = None
    ssrcs: tuple[int, ...] = ()
    packets: PacketCounts = field(default_factory=PacketCounts)
    jitter_ms: float = 0.0
    duration_s: float = 0.0
    trimmed_samples: int = 0
    """Samples of received audio cut because they fell behind what was already written
    (a sender that jumped back in time, or a server too overloaded to keep up)."""
    resyncs: Mapping[str, int] = field(default_factory=dict)
    """Times the track was re-anchored at a packet's arrival, by reason (``ssrc_change``,
    ``timestamp_backward``, ``timestamp_jump``, ``clock_rate_change``): where the audio
    around it may have moved or been cut."""
    dtmf_dropped: int = 0
    """Key presses of this stream not listed in ``dtmf``: past the cap of 1,000."""
    decode_errors: int = 0
    """Packets dropped because the codec's decoder refused them (a broken AMR table of
    contents, a G.729 payload that is not whole frames)."""
    sha256: str | None = None

    def __post_init__(self) -> None:
        if not is_safe_name(self.file):
            raise UsageError(f"stream file {self.file!r} is not a sanitised name")
        if (self.sample_rate is not None and self.sample_rate < 1) or self.decode_errors < 0:
            raise UsageError("sample_rate or decode_errors out of range")
        if self.srtp is not None and _SRTP_SUITE.fullmatch(self.srtp) is None:
            raise UsageError("srtp must be a crypto-suite name, never key material")
        if self.clock_rate < 1 or min(self.jitter_ms, self.duration_s, self.dtmf_dropped) < 0:
            raise UsageError("clock_rate, jitter_ms or duration_s out of range")
        if any(not 0 <= ssrc <= _U32_MAX for ssrc in self.ssrcs):
            raise UsageError(f"ssrcs {self.ssrcs} out of 32-bit range")
        if any(n < 0 for n in self.resyncs.values()):
            raise UsageError(f"resyncs must not be negative: {dict(self.resyncs)}")
        _check_sha256(self.sha256)


@dataclass(frozen=True, slots=True)
class MixRecord:
    """The stereo mix: ``channels`` are the stream labels on the left and right.

    Present while recording too (with ``sha256`` null) when the session layer already knows
    the channel order, so that a repair after a crash builds the mix the same way.
    """

    file: str
    channels: tuple[str, str]
    sha256: str | None = None

    def __post_init__(self) -> None:
        if not is_safe_name(self.file):
            raise UsageError(f"mix file {self.file!r} is not a sanitised name")
        _check_sha256(self.sha256)


@dataclass(frozen=True, slots=True)
class MetadataUpdate:
    """One raw metadata version kept as ``file``; ``method`` is the SIP method carrying it."""

    n: int
    received_at: datetime
    file: str
    method: str

    def __post_init__(self) -> None:
        if self.n < 1 or not is_safe_name(self.file):
            raise UsageError(f"metadata update {self.n} in {self.file!r}")
        if _SIP_METHOD.fullmatch(self.method) is None:
            raise UsageError(f"{self.method!r} is not a SIP method name")


@dataclass(frozen=True, slots=True)
class DtmfEvent:
    """An RFC 4733 event: ``at_s`` from the start of the recording, on stream ``label``."""

    digit: str
    at_s: float
    duration_ms: int
    label: str | None = None

    def __post_init__(self) -> None:
        if self.digit not in _DTMF_DIGITS or min(self.at_s, self.duration_ms) < 0:
            raise UsageError(f"{self.digit!r} is not an RFC 4733 DTMF event")


@dataclass(frozen=True, slots=True)
class StreamOut:
    """One live-audio consumer of the session (``stream.url``): its URL as logged (no
    query), since when it is connected, and the audio (ms, summed over tracks) sent to
    it and dropped for it (queue overflow, or while it was unreachable)."""

    url: str
    format: str
    connected_at: datetime | None = None  # the first connection
    media_ms_sent: int = 0
    media_ms_dropped: int = 0
    reconnects: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionSidecar:
    """Everything in ``session.json``, in its JSON order.  Change it with ``replace``.

    ``status`` comes first in the JSON after ``schema``: repair's scan reads only the
    start of each file to skip finished sessions.
    """

    status: SessionStatus = SessionStatus.RECORDING
    call_id: str
    from_: str | None = None
    to: str | None = None
    request_uri: str | None = None
    source: Source | None = None
    user_agent: str | None = None
    siprec: SiprecIds = field(default_factory=SiprecIds)
    twilio: TwilioIds | None = None
    custom_parameters: Mapping[str, str] = field(default_factory=dict)
    participants: tuple[Participant, ...] = ()
    streams: tuple[StreamRecord, ...] = ()
    mix: MixRecord | None = None
    mix_skipped_reason: str | None = None
    started_at: datetime
    ended_at: datetime | None = None
    end_reason: EndReason | None = None
    metadata_updates: tuple[MetadataUpdate, ...] = ()
    dtmf: tuple[DtmfEvent, ...] = ()
    streams_out: tuple[StreamOut, ...] = ()
    error: str | None = None

    def __post_init__(self) -> None:
        recording = self.status is SessionStatus.RECORDING
        if recording != (self.ended_at is None) or recording != (self.end_reason is None):
            raise UsageError("ended_at and end_reason are set exactly when not recording")
        if (self.status is SessionStatus.FAILED) != (self.error is not None):
            raise UsageError("error is set exactly when the status is failed")
        labels = [stream.label for stream in self.streams]
        if len(set(labels)) != len(labels):
            raise UsageError(f"stream labels {labels} are not unique")
        if self.mix is not None and not set(self.mix.channels) <= set(labels):
            raise UsageError(f"mix channels {self.mix.channels} are not stream labels")
        for moment in (self.started_at, self.ended_at):
            if moment is not None and moment.utcoffset() is None:
                raise UsageError("times must be aware datetimes")

    def to_dict(self) -> dict[str, Any]:
        """The JSON document (the only place the model becomes a dict)."""
        return {"schema": SCHEMA_VERSION, **_object_to_json(self)}

    @classmethod
    def from_dict(cls, doc: object) -> SessionSidecar:
        """Read a document written by :meth:`to_dict`.  Raises ValueError naming the field."""
        top = _Obj(doc, "")
        if top.text("schema") != SCHEMA_VERSION:
            raise ValueError(f"schema is not {SCHEMA_VERSION!r}")
        source = top.opt_obj("source")
        twilio = top.opt_obj("twilio")
        siprec = top.obj("siprec")
        mix = top.opt_obj("mix")
        custom = top.obj("custom_parameters")
        end_reason = top.opt_text("end_reason")
        ended_at = top.opt_text("ended_at")
        try:
            return cls(
                call_id=top.text("call_id"),
                started_at=_parse_time(top.text("started_at")),
                status=SessionStatus(top.text("status")),
                from_=top.opt_text("from"),
                to=top.opt_text("to"),
                request_uri=top.opt_text("request_uri"),
                source=None
                if source is None
                else Source(
                    source.text("address"), source.integer("port"), source.text("transport")
                ),
                user_agent=top.opt_text("user_agent"),
                siprec=SiprecIds(siprec.opt_text("session_id"), siprec.opt_text("group_id")),
                twilio=None
                if twilio is None
                else TwilioIds(twilio.opt_text("call_sid"), twilio.opt_text("account_sid")),
                custom_parameters={key: custom.text(key) for key in custom},
                participants=tuple(_participant_from(p) for p in top.objs("participants")),
                streams=tuple(_stream_from(s) for s in top.objs("streams")),
                mix=None
                if mix is None
                else MixRecord(
                    mix.text("file"), _pair(mix.texts("channels")), mix.opt_text("sha256")
                ),
                mix_skipped_reason=top.opt_text("mix_skipped_reason"),
                ended_at=None if ended_at is None else _parse_time(ended_at),
                end_reason=None if end_reason is None else EndReason(end_reason),
                metadata_updates=tuple(_update_from(u) for u in top.objs("metadata_updates")),
                dtmf=tuple(_dtmf_from(d) for d in top.objs("dtmf")),
                streams_out=tuple(_stream_out_from(o) for o in top.objs("streams_out"))
                if "streams_out" in top else (),
                error=top.opt_text("error"),
            )
        except UsageError as exc:  # the values are well typed but inconsistent
            raise ValueError(str(exc)) from exc


def format_time(moment: datetime) -> str:
    """RFC 3339 in UTC with milliseconds: ``2026-11-23T10:15:00.250Z``."""
    if moment.utcoffset() is None:
        raise UsageError(f"{moment!r} has no time zone")
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def write_sidecar(path: Path, sidecar: SessionSidecar, *, durable: bool = True) -> None:
    """Replace ``path`` atomically: temp file in the same directory, fsync, rename, fsync dir
    (without ``durable``, no fsync: still never a torn file for a killed process).

    Raises :class:`RecordingIOError` (the temp file is removed) when the disk refuses.
    """
    data = (json.dumps(sidecar.to_dict(), indent=2, allow_nan=False) + "\n").encode("ascii")
    replace_atomically(path, data, durable=durable)


def replace_atomically(path: Path, data: bytes, *, mode: int = FILE_MODE,
                       durable: bool = True) -> None:
    """:func:`write_sidecar` for any bytes: a new file of ``mode`` (less the umask) takes
    the place of ``path``."""
    try:
        fd, tmp = create_temporary(path.parent, f".{path.name}.", ".tmp", mode=mode)
    except OSError as exc:
        raise RecordingIOError("create temporary file for", path, exc) from exc
    try:
        try:
            write_all(fd, data, tmp)
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError as exc:
        unlink_if_present(tmp)
        raise RecordingIOError("write", path, exc) from exc
    except RecordingIOError:
        unlink_if_present(tmp)
        raise
    if durable:
        fsync_directory(path.parent)


def read_sidecar(path: Path, *, max_bytes: int = MAX_SIDECAR_BYTES) -> SessionSidecar:
    """Load a sidecar.  :class:`SidecarFormatError` when it is too big, not JSON or not ours."""
    try:
        with open(path, "rb") as f:
            data = f.read(max_bytes + 1)
    except OSError as exc:
        raise RecordingIOError("read", path, exc) from exc
    if len(data) > max_bytes:
        raise SidecarFormatError(path, f"larger than {max_bytes} bytes")
    try:
        return SessionSidecar.from_dict(json.loads(data))
    except ValueError as exc:  # json.JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise SidecarFormatError(path, str(exc)) from exc


def sha256_file(path: Path, *, chunk_bytes: int = _HASH_CHUNK_BYTES) -> str:
    """Hex SHA-256 of a file, read in chunks (a two-hour call is never in memory)."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            while chunk := f.read(chunk_bytes):
                digest.update(chunk)
    except OSError as exc:
        raise RecordingIOError("read", path, exc) from exc
    return digest.hexdigest()


def load_session_schema() -> dict[str, Any]:
    """The JSON Schema of ``session.json`` shipped in the package."""
    text = resources.files("srs").joinpath("schemas/session.schema.json").read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


def _object_to_json(value: Any) -> dict[str, object]:
    # ``from_`` is ``from`` in JSON (a Python keyword).
    return {f.name.rstrip("_"): _to_json(getattr(value, f.name)) for f in fields(value)}


def _to_json(value: object) -> object:
    """Dataclass -> JSON value; network text is cut to MAX_TEXT_CHARS on the way."""
    if is_dataclass(value) and not isinstance(value, type):
        return _object_to_json(value)
    if isinstance(value, StrEnum):
        return value.value
    if isinstance(value, datetime):
        return format_time(value)
    if isinstance(value, str):
        return value[:MAX_TEXT_CHARS]
    if isinstance(value, tuple):
        return [_to_json(item) for item in value]
    if isinstance(value, Mapping):
        items = list(value.items())[:MAX_CUSTOM_PARAMETERS]
        return {str(key)[:MAX_TEXT_CHARS]: _to_json(item) for key, item in items}
    return value  # int, float, None


def _stream_from(s: _Obj) -> StreamRecord:
    packets = s.obj("packets")
    dropped = packets.obj("dropped")
    return StreamRecord(
        label=s.text("label"),
        file=s.text("file"),
        codec=s.text("codec"),
        clock_rate=s.integer("clock_rate"),
        sample_rate=s.opt_integer("sample_rate"),
        srtp=s.opt_text("srtp"),
        participant=s.opt_text("participant"),
        ssrcs=tuple(s.integers("ssrcs")),
        packets=PacketCounts(
            received=packets.integer("received"),
            lost=packets.integer("lost"),
            duplicated=packets.integer("duplicated"),
            reordered=packets.integer("reordered"),
            late=packets.integer("late"),
            dropped=_counts(dropped),
            rtcp=packets.integer("rtcp") if "rtcp" in packets else 0,
            unoffered_static=(packets.integer("unoffered_static")
                              if "unoffered_static" in packets else 0),
        ),
        jitter_ms=s.number("jitter_ms"),
        duration_s=s.number("duration_s"),
        trimmed_samples=s.integer("trimmed_samples") if "trimmed_samples" in s else 0,
        resyncs=_counts(s.obj("resyncs")) if "resyncs" in s else {},
        dtmf_dropped=s.integer("dtmf_dropped") if "dtmf_dropped" in s else 0,
        decode_errors=s.integer("decode_errors") if "decode_errors" in s else 0,
        sha256=s.opt_text("sha256"),
    )


def _counts(counts: _Obj) -> dict[str, int]:
    return {reason: counts.integer(reason) for reason in counts}


def _update_from(u: _Obj) -> MetadataUpdate:
    received_at = _parse_time(u.text("received_at"))
    return MetadataUpdate(u.integer("n"), received_at, u.text("file"), u.text("method"))


def _dtmf_from(d: _Obj) -> DtmfEvent:
    digit, at_s, label = d.text("digit"), d.number("at_s"), d.opt_text("label")
    return DtmfEvent(digit, at_s, d.integer("duration_ms"), label)


def _stream_out_from(o: _Obj) -> StreamOut:
    connected_at = o.opt_text("connected_at")
    return StreamOut(o.text("url"), o.text("format"),
                     None if connected_at is None else _parse_time(connected_at),
                     o.integer("media_ms_sent"), o.integer("media_ms_dropped"),
                     o.integer("reconnects"))


def _participant_from(p: _Obj) -> Participant:
    return Participant(p.text("id"), p.opt_text("name"), p.opt_text("aor"), p.texts("sends"))


class _Obj:
    """Typed reads from one JSON object; a wrong or missing field raises ValueError."""

    def __init__(self, value: object, where: str) -> None:
        if not isinstance(value, dict):
            raise ValueError(f"{where or 'document'} is not an object")
        self._value: dict[str, object] = value
        self._where = where

    def __contains__(self, key: str) -> bool:
        return key in self._value

    def __iter__(self) -> Iterator[str]:
        return iter(self._value)

    def _get(self, key: str, kinds: tuple[type, ...], what: str) -> Any:
        if key not in self._value:
            raise ValueError(f"{self._where}{key} is missing")
        value = self._value[key]
        if not isinstance(value, kinds) or isinstance(value, bool):
            raise ValueError(f"{self._where}{key} is not {what}")
        return value

    def text(self, key: str) -> str:
        text: str = self._get(key, (str,), "a string")
        return text

    def opt_text(self, key: str) -> str | None:
        return None if self._value.get(key) is None else self.text(key)

    def integer(self, key: str) -> int:
        number: int = self._get(key, (int,), "an integer")
        return number

    def opt_integer(self, key: str) -> int | None:
        return None if self._value.get(key) is None else self.integer(key)

    def number(self, key: str) -> float:
        return float(self._get(key, (int, float), "a number"))

    def obj(self, key: str) -> _Obj:
        return _Obj(self._get(key, (dict,), "an object"), f"{self._where}{key}.")

    def opt_obj(self, key: str) -> _Obj | None:
        return None if self._value.get(key) is None else self.obj(key)

    def objs(self, key: str) -> list[_Obj]:
        items: list[object] = self._get(key, (list,), "a list")
        return [_Obj(item, f"{self._where}{key}[{i}].") for i, item in enumerate(items)]

    def texts(self, key: str) -> tuple[str, ...]:
        items: list[object] = self._get(key, (list,), "a list")
        if not all(isinstance(item, str) for item in items):
            raise ValueError(f"{self._where}{key} is not a list of strings")
        return tuple(item for item in items if isinstance(item, str))

    def integers(self, key: str) -> tuple[int, ...]:
        items: list[object] = self._get(key, (list,), "a list")
        if not all(isinstance(item, int) and not isinstance(item, bool) for item in items):
            raise ValueError(f"{self._where}{key} is not a list of integers")
        return tuple(item for item in items if isinstance(item, int))


def _pair(labels: tuple[str, ...]) -> tuple[str, str]:
    if len(labels) != 2:
        raise ValueError(f"mix.channels has {len(labels)} labels, not 2")
    return labels[0], labels[1]


def _parse_time(text: str) -> datetime:
    moment = datetime.fromisoformat(text)  # ValueError names the text
    if moment.utcoffset() is None:
        raise ValueError(f"{text!r} has no time zone")
    return moment


def _check_sha256(value: str | None) -> None:
    if value is not None and _SHA256_HEX.fullmatch(value) is None:
        raise UsageError(f"{value!r} is not a lower-case hex SHA-256")

