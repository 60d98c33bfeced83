"""``srs replay CAPTURE --out DIR``: record the SIPREC sessions of a packet capture offline.

The capture's packets drive the same UAS core and session manager as the live server,
with each packet's timestamp as the clock: SIP from the recording client is fed to the
core, the recorder's own answers in the capture tell which RTP port carried which
m-line, and RTP goes to the streams those answers name.  Ticks (the once-a-second
writes) and SIP timers run on packet time.  A session that srs captured itself
(``recordings.capture``) therefore comes out byte for byte the same as the live
recording.

Roles are read from the capture: the recorder is the destination of a SIPREC INVITE
(``Require: siprec``, a ``+sip.src`` Contact, or a metadata body part).  Its own requests
(a BYE on timeout) and the responses to them are not replayed.  Sessions the capture
does not end are finalised at its last packet with ``end_reason`` ``shutdown``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from srs.sip.auth import Authenticator
from srs.capture import read_capture
from srs.capture.decode import PacketDecoder
from srs.capture.packets import Datagram, StreamChunk, StreamGap
from srs.config import Settings
from srs.errors import SdpError, SipParseError
from srs.log import get_logger
from srs.recording import sidecar as sc
from srs.server.sessions import TICK_S, SessionManager
from srs.recording.session import StreamState
from srs.sdp.description import SessionDescription
from srs.sip.message import SipMessage, SipRequest, SipResponse
from srs.sip.parser import SipMessageError, StreamParser, parse_message
from srs.sip.transaction import Source
from srs.sip.uas import Local, NewSession, SessionEnded, SessionUpdate, SipCore, Transmit

__all__ = ["ReplayReport", "is_siprec_invite", "replay_capture", "sip_message", "stream_messages"]

Progress = Callable[[int, int | None], None]


@dataclass
class ReplayReport:
    packets: int = 0
    sip_messages: int = 0
    rtp_packets: int = 0
    unmatched_rtp: int = 0
    sessions: list[Path] = field(default_factory=list)
    drops: dict[str, int] = field(default_factory=dict)


class _ReplayMedia:
    """Ports that bind nothing: the replay hands captured datagrams to the streams."""

    def __init__(self) -> None:
        self.next_port = 10000
        self.streams: dict[int, StreamState] = {}

    async def open(self, count: int, near: int | None) -> list[int]:
        ports = list(range(self.next_port, self.next_port + 2 * count, 2))
        self.next_port += 2 * count
        return ports

    def attach(self, port: int, stream: StreamState) -> None:
        self.streams[port] = stream

    def close(self, ports: list[int]) -> None:
        for port in ports:
            self.streams.pop(port, None)


async def _direct(function: Callable[..., Any], *args: Any) -> Any:
    return function(*args)


def is_siprec_invite(request: SipRequest) -> bool:
    """A dialog-creating INVITE from a recording client (RFC 7866 §6.1.1): ``Require:
    siprec``, a ``+sip.src`` Contact, or a metadata body part.  Its destination is a
    recorder."""
    try:
        if request.method != "INVITE" or request.to.tag is not None:
            return False
        if "siprec" in (tag.lower() for tag in request.require):
            return True
    except SipParseError:
        return False  # a broken INVITE in the capture: nothing to replay
    contact = request.headers.get("Contact") or ""
    if "+sip.src" in contact:
        return True
    return b"rs-metadata" in request.body


class _Replay:
    def __init__(self, settings: Settings, report: ReplayReport) -> None:
        self.settings = settings
        self.report = report
        self.now = 0.0
        self.base_us = 0
        self.core = SipCore(authenticator=Authenticator.from_strings(settings.auth.header, ()))
        self.media = _ReplayMedia()
        self.recorders: set[tuple[str, int]] = set()
        self.routes: dict[tuple[str, int], tuple[str, int]] = {}  # (addr, port) -> (call, m-line)
        self.captured_tags: dict[str, str] = {}  # Call-ID -> the original recorder's To tag
        self.parsers: dict[Any, StreamParser] = {}
        self.manager: SessionManager | None = None

    async def run(self, path: Path, progress: Progress | None) -> None:
        self.manager = SessionManager(
            self.settings, self.core, transmit=self._transmit, local_for=self._local_for,
            media_address_for=lambda peer: "127.0.0.1", log=get_logger(replay=str(path)),
            media=self.media, clock=lambda: self.now, epoch_offset_s=0.0,
            blocking=_direct, autotick=False,
        )
        decoder = PacketDecoder()
        with read_capture(path) as reader:
            for packet in reader:
                self.report.packets += 1
                if self.base_us == 0:
                    self.base_us = packet.timestamp_ns // 1000
                    self.manager.epoch_offset_s = self.base_us / 1_000_000
                for event in decoder.decode(packet):
                    await self._event(event, packet.timestamp_ns // 1000)
                if progress is not None and self.report.packets % 2000 == 0:
                    progress(reader.offset, reader.total_bytes)
            for event in decoder.finish():
                await self._event(event, None)
            if progress is not None:
                progress(reader.offset, reader.total_bytes)
        self.report.drops = dict(decoder.drops)
        for live in list(self.manager.sessions.values()):
            await self.manager.finish(live, sc.EndReason.SHUTDOWN, at=self.now)
        await self._settle()

    # -- time ---------------------------------------------------------------------------

    async def _advance(self, timestamp_us: int | None) -> None:
        """Run every tick and SIP timer due before ``timestamp_us``, then set the clock."""
        assert self.manager is not None
        target = self.now if timestamp_us is None else (timestamp_us - self.base_us) / 1_000_000
        while True:
            due: list[tuple[float, Any]] = []
            for live in self.manager.sessions.values():
                tick_at = live.session.origin_s + (live.ticks + 1) * TICK_S
                if tick_at <= target:
                    due.append((tick_at, live))
            timer = self.core.next_timer()
            if timer is not None and timer <= target:
                due.append((timer, None))
            if not due:
                break
            at, live = min(due, key=lambda item: item[0])
            self.now = max(self.now, at)
            if live is None:
                self._handle(self.core.handle_timer(self.now))
            else:
                await self.manager.tick(live, self.now)
            await self._settle()
        self.now = max(self.now, target)

    async def _settle(self) -> None:
        """Let every session task started by the last input run to completion."""
        assert self.manager is not None
        while self.manager.tasks:
            await asyncio.gather(*list(self.manager.tasks))

    # -- packets ------------------------------------------------------------------------

    async def _event(self, event: Any, timestamp_us: int | None) -> None:
        if isinstance(event, Datagram):
            await self._advance(timestamp_us)
            message = sip_message(event.payload)
            if message is not None:
                await self._sip(message, Source("udp", event.src, event.sport),
                                (event.dst, event.dport))
            else:
                self._rtp(event)
        elif isinstance(event, StreamChunk):
            await self._advance(timestamp_us)
            src, sport, dst, dport = event.flow
            for message in stream_messages(self.parsers, event):
                # TLS is captured decrypted as stream data: the sender's Via names the
                # transport it used (RFC 3261 §18.1.1).
                transport = "tcp"
                if isinstance(message, SipRequest):
                    try:
                        transport = "tls" if message.top_via.transport.upper() == "TLS" else "tcp"
                    except SipParseError:
                        pass
                await self._sip(message, Source(transport, src, sport, hash(event.flow)), (dst, dport))
        elif isinstance(event, StreamGap):
            self.parsers.pop(event.flow, None)

    async def _sip(self, message: SipMessage, peer: Source, destination: tuple[str, int]) -> None:
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
        message = self._map_tag(message)
        self._handle(self.core.receive(message, peer, self.now))
        await self._settle()

    def _rtp(self, datagram: Datagram) -> None:
        route = self.routes.get((datagram.dst, datagram.dport))
        stream = self._stream(route) if route is not None else None
        if stream is None:
            self.report.unmatched_rtp += 1
            return
        self.report.rtp_packets += 1
        stream.receive(datagram.payload, (datagram.src, datagram.sport), self.now)

    def _stream(self, route: tuple[str, int]) -> StreamState | None:
        assert self.manager is not None
        call_id, index = route
        for dialog_id, live in self.manager.sessions.items():
            if dialog_id.call_id == call_id:
                for stream in live.session.streams:
                    if stream.index == index and stream.receiving:
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
        assert self.manager is not None
        tag = request.to.tag
        if tag is None or self.captured_tags.get(request.call_id) != tag:
            return request
        for dialog_id in self.manager.sessions:
            if dialog_id.call_id == request.call_id:
                to = request.to.with_param("tag", dialog_id.local_tag)
                return request.with_headers(request.headers.set("To", str(to)))
        return request

    # -- outputs ------------------------------------------------------------------------

    def _handle(self, outputs: list[Any]) -> None:
        assert self.manager is not None
        for output in outputs:
            if isinstance(output, Transmit):
                continue  # nothing goes back on the wire in a replay
            if isinstance(output, SessionEnded) and output.dialog_id is None:
                continue  # a CANCEL before the answer: the set-up sees it
            if isinstance(output, NewSession | SessionUpdate | SessionEnded):
                self.manager.dispatch(output)

    def _transmit(self, outputs: list[Any]) -> None:
        self._handle(outputs)

    def _local_for(self, peer: Any) -> Local:
        return Local("127.0.0.1", 5060, getattr(peer, "transport", "udp"))


def sip_message(payload: bytes) -> SipMessage | None:
    """The SIP message a captured UDP payload holds, or None (RTP, RTCP, anything else)."""
    head = payload[:16]
    if not (head.startswith(b"SIP/2.0 ") or b" sip:" in payload[:200] or b" sips:" in payload[:200]):
        return None
    try:
        return parse_message(payload)
    except SipMessageError:
        return None


def stream_messages(parsers: dict[Any, StreamParser], chunk: StreamChunk) -> list[SipMessage]:
    """The SIP messages ``chunk`` completes on its TCP flow, with one parser per flow in
    ``parsers``; a flow whose framing is lost starts afresh with its next chunk."""
    parser = parsers.setdefault(chunk.flow, StreamParser())
    try:
        return parser.feed(chunk.data)
    except SipMessageError as error:
        parsers.pop(chunk.flow, None)
        return list(error.messages)


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
    asyncio.run(_Replay(settings, report).run(path, progress))
    report.sessions = sorted(p.parent for p in set(out_dir.glob("*/*/*/*/session.json")) - before)
    return report
