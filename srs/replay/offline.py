"""``srs replay CAPTURE --out DIR``: record the SIPREC sessions of a packet capture offline.

The capture's packets drive the same UAS core and recording core as the live server, with
each packet's timestamp as the clock: SIP from the recording client is fed to the SIP
core, the recorder's own answers in the capture tell which RTP port carried which m-line,
and RTP goes to the streams those answers name.  The recording core's ticks and the SIP
timers run on packet time, and its requests (ports, file jobs) are served inline.  A
session that srs captured itself (``recordings.capture``) therefore comes out byte for
byte the same as the live recording.

Roles are read from the capture: the recorder is the destination of a SIPREC INVITE
(``Require: siprec``, a ``+sip.src`` Contact, or a metadata body part).  Its own requests
(a BYE on timeout) and the responses to them are not replayed.  Sessions the capture
does not end are finalised at its last packet with ``end_reason`` ``shutdown``.
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, assert_never

from srs.capture import read_capture
from srs.capture.decode import PacketDecoder
from srs.capture.packets import Datagram, StreamChunk, StreamGap
from srs.config import Settings
from srs.errors import SdpError, SipParseError
from srs.log import get_logger, log_entry
from srs.recording.core import Recorder
from srs.recording.outputs import (
    Answer,
    Attach,
    Drain,
    EndLive,
    Fail,
    Finished,
    HangUp,
    Log,
    OpenPorts,
    Output,
    Reject,
    Rejected,
    Release,
    Request,
    Started,
    StartLive,
    WaitLive,
)
from srs.recording.policy import RecorderConfig
from srs.recording.signalling import answer, signal
from srs.recording.stream import StreamState
from srs.replay.messages import is_siprec_invite, sip_message, stream_messages
from srs.sdp.description import SessionDescription
from srs.sip.auth import Authenticator
from srs.sip.client_transaction import TimedOut
from srs.sip.message import SipMessage, SipRequest, SipResponse
from srs.sip.parser import StreamParser
from srs.sip.transaction import Source
from srs.sip.uas import Local, NewSession, Refused, SessionEnded, SessionUpdate, SipCore, Transmit
from srs.sip.uas import Output as SipOutput

__all__ = ["ReplayReport", "replay_capture"]

Progress = Callable[[int, int | None], None]
# The ports a replay "binds": numbers for its answers; nothing is opened.
_FIRST_PORT = 10000


@dataclass
class ReplayReport:
    packets: int = 0
    sip_messages: int = 0
    rtp_packets: int = 0
    unmatched_rtp: int = 0
    sessions: list[Path] = field(default_factory=list)
    drops: dict[str, int] = field(default_factory=dict)


class _Replay:
    """The offline driver of the recording core: packet time, requests served inline."""

    def __init__(self, settings: Settings, report: ReplayReport, log: Any) -> None:
        self.report = report
        self.log = log
        self.now = 0.0
        self.base_us = 0
        self.core = SipCore(authenticator=Authenticator.from_strings(settings.auth.header, ()))
        # Offline time runs faster than a consumer's: nothing is streamed live.
        self.recorder = Recorder(replace(RecorderConfig.from_settings(settings), live=False),
                                 epoch_offset_s=0.0)
        self.next_port = _FIRST_PORT
        self.recorders: set[tuple[str, int]] = set()
        self.routes: dict[tuple[str, int], tuple[str, int]] = {}  # (addr, port) -> (call, m-line)
        self.captured_tags: dict[str, str] = {}  # Call-ID -> the original recorder's To tag
        self.parsers: dict[Any, StreamParser] = {}

    def run(self, path: Path, progress: Progress | None) -> None:
        decoder = PacketDecoder()
        with read_capture(path) as reader:
            for packet in reader:
                self.report.packets += 1
                if self.base_us == 0:
                    self.base_us = packet.timestamp_ns // 1000
                    self.recorder.epoch_offset_s = self.base_us / 1_000_000
                for event in decoder.decode(packet):
                    self._event(event, packet.timestamp_ns // 1000)
                if progress is not None and self.report.packets % 2000 == 0:
                    progress(reader.offset, reader.total_bytes)
            for event in decoder.finish():
                self._event(event, None)
            if progress is not None:
                progress(reader.offset, reader.total_bytes)
        self.report.drops = dict(decoder.drops)
        self._execute(self.recorder.shutdown(self.now))

    # -- time ---------------------------------------------------------------------------

    def _advance(self, timestamp_us: int | None) -> None:
        """Run every tick and SIP timer due before ``timestamp_us``, then set the clock
        (ticks first when both fall at once)."""
        target = self.now if timestamp_us is None else (timestamp_us - self.base_us) / 1_000_000
        while True:
            tick, timer = self.recorder.next_timer(), self.core.next_timer()
            due = [t for t in (tick, timer) if t is not None and t <= target]
            if not due:
                break
            self.now = max(self.now, min(due))
            if tick is not None and tick <= self.now:
                self._execute(self.recorder.handle_timer(self.now))
            else:
                self._execute(self.core.handle_timer(self.now))
        self.now = max(self.now, target)

    # -- packets ------------------------------------------------------------------------

    def _event(self, event: Any, timestamp_us: int | None) -> None:
        if isinstance(event, Datagram):
            self._advance(timestamp_us)
            message = sip_message(event.payload)
            if message is not None:
                self._sip(message, Source("udp", event.src, event.sport), (event.dst, event.dport))
            else:
                self._rtp(event)
        elif isinstance(event, StreamChunk):
            self._advance(timestamp_us)
            src, sport, dst, dport = event.flow
            for message in stream_messages(self.parsers, event):
                # TLS is captured decrypted as stream data: the sender's Via names the
                # transport it used (RFC 3261 §18.1.1).
                transport = "tcp"
                if isinstance(message, SipRequest):
                    with contextlib.suppress(SipParseError):
                        transport = "tls" if message.top_via.transport.upper() == "TLS" else "tcp"
                self._sip(message, Source(transport, src, sport, hash(event.flow)), (dst, dport))
        elif isinstance(event, StreamGap):
            self.parsers.pop(event.flow, None)

    def _sip(self, message: SipMessage, peer: Source, destination: tuple[str, int]) -> None:
        self.report.sip_messages += 1
        source = (peer.host, peer.port)
        if isinstance(message, SipResponse):
            if source in self.recorders:
                self._learn(message)
            return
        if source in self.recorders:
            return  # the recorder's own requests (BYE on timeout): not replayed
        if is_siprec_invite(message):
            self.recorders.add(destination)
        elif destination not in self.recorders:
            return  # traffic that is not to a recorder
        self._execute(self.core.receive(self._map_tag(message), peer, self.now))

    def _rtp(self, datagram: Datagram) -> None:
        route = self.routes.get((datagram.dst, datagram.dport))
        stream = self._stream(route) if route is not None else None
        if stream is None:
            self.report.unmatched_rtp += 1
            return
        self.report.rtp_packets += 1
        stream.receive(datagram.payload, (datagram.src, datagram.sport), self.now)

    def _stream(self, route: tuple[str, int]) -> StreamState | None:
        call_id, index = route
        for owner, stream in self.recorder.streams():
            if owner == call_id and stream.index == index and stream.receiving:
                return stream
        return None

    def _learn(self, response: SipResponse) -> None:
        """The recorder's 2xx to an INVITE: its To tag, and its answer's RTP ports."""
        try:
            if response.cseq.method != "INVITE" or not 200 <= response.status < 300:
                return
            call_id, tag = response.call_id, response.to.tag
            answer = SessionDescription.parse(response.body) if response.body else None
        except (SipParseError, SdpError):
            return
        if tag is not None:
            self.captured_tags[call_id] = tag
        if answer is None:
            return
        for index, media in enumerate(answer.media):
            connection = answer.connection_for(media)
            if media.port and connection is not None:
                self.routes[(connection.host, media.port)] = (call_id, index)

    def _map_tag(self, request: SipRequest) -> SipRequest:
        """In-dialog requests carry the original recorder's To tag; ours differs."""
        tag = request.to.tag
        if tag is None or self.captured_tags.get(request.call_id) != tag:
            return request
        ours = self.recorder.local_tag(request.call_id)
        if ours is None:
            return request
        to = request.to.with_param("tag", ours)
        return request.with_headers(request.headers.set("To", str(to)))

    # -- outputs ------------------------------------------------------------------------

    def _execute(self, outputs: Iterable[Output | SipOutput]) -> None:
        """Serve every output inline, and whatever serving it brings, in order."""
        queue: deque[Output | SipOutput] = deque(outputs)
        while queue:
            output = queue.popleft()
            if isinstance(output, Request):
                queue.extend(self._serve(output))
            elif isinstance(output, NewSession):
                queue.extend(self.recorder.receive(
                    output, self.now, local=Local("127.0.0.1", 5060, output.peer.transport),
                    media_address="127.0.0.1"))
            elif isinstance(output, SessionUpdate | SessionEnded):
                queue.extend(self.recorder.receive(output, self.now))
            elif isinstance(output, Log):
                log_entry(self.log, output)
            elif isinstance(output, Reject | Fail | HangUp):
                queue.extend(signal(self.core, output, self.now))
            elif isinstance(output, Transmit | Refused | TimedOut | Attach | Release | Rejected
                            | Started | Finished | StartLive | EndLive):
                pass  # nothing goes back on the wire, the replay routes RTP itself, and
                # metrics events have no reader here
            else:
                assert_never(output)

    def _serve(self, request: Request) -> list[Output | SipOutput]:
        work = request.work
        extra: list[Output | SipOutput] = []
        result: Any = None
        error: Exception | None = None
        try:
            if isinstance(work, OpenPorts):
                result = list(range(self.next_port, self.next_port + 2 * work.count, 2))
                self.next_port += 2 * work.count
            elif isinstance(work, Drain):
                result = 0  # the capture's datagrams are routed in order: none is queued
            elif isinstance(work, Answer):
                sent, result = answer(self.core, work, self.now)
                extra.extend(sent)
            elif isinstance(work, WaitLive):
                result = None  # never asked for: live is off here
            else:
                result = work.run()
        except Exception as exc:  # handed to the core, which classifies it
            error = exc
        return extra + self.recorder.complete(request.id, result, error, self.now)



def replay_capture(path: Path, out_dir: Path, *, settings: Settings | None = None,
                   progress: Progress | None = None) -> ReplayReport:
    """Record every SIPREC session of the capture at ``path`` into ``out_dir``.

    Raises :class:`srs.capture.CaptureFormatError` (naming the file and byte offset) for a
    file that is not a capture or is cut short.
    """
    base = settings if settings is not None else Settings()
    settings = replace(base, recordings=replace(base.recordings, dir=out_dir, capture=False),
                       server=replace(base.server, max_sessions=100000))
    report = ReplayReport()
    out_dir.mkdir(parents=True, exist_ok=True)
    before = set(out_dir.glob("*/*/*/*/session.json"))
    _Replay(settings, report, get_logger(replay=str(path))).run(path, progress)
    report.sessions = sorted(p.parent for p in set(out_dir.glob("*/*/*/*/session.json")) - before)
    return report
