"""``srs replay CAPTURE --target URI``: re-send the SIPREC sessions of a capture to a live SRS.

Two layers, this module the pure one:

* :func:`plan_capture` (pure apart from reading the file) finds every SIPREC session the
  way :mod:`srs.replay.offline` does -- a SIPREC INVITE
  (:func:`srs.replay.offline.is_siprec_invite`) makes its destination a recorder, and
  the recorder's 2xx answers tell which RTP destination port carried which m-line -- and
  plans each one: the INVITE, the later requests the recording client sent in its dialog
  (re-INVITE, UPDATE, BYE, ...) with the recorder's final status, and every RTP/RTCP
  datagram by m-line, all with their capture times.
* :func:`srs.replay.sender.replay_live` (asyncio) places each planned session as a new
  call from srs's own UAC (:mod:`srs.client`): a fresh Call-ID, From tag, Via and
  Contact, the target as Request-URI, our credential instead of the captured one, and
  ``X-Srs-Replay-Of`` naming the original Call-ID.  Bodies go out as captured (metadata
  byte for byte) except that every SDP offer's ``c=`` names our RTP address and each
  m-line's port our socket for it (:func:`rewrite_offer`).  The captured ``a=crypto``
  lines stay: the captured SRTP packets were protected with those keys, so offering them
  again lets the target decrypt the packets as they are.  Each datagram is sent
  unchanged to the port the target's answer gives its m-line, at its capture time
  counted from the INVITE (and divided by the speed); requests go at their capture
  times, and the BYE at its own, or after the last packet when the capture has none.

Each original media source (address and port) of an m-line gets a socket of its own, so
the target sees the same source changes (and latches, or drops ``other_source``) as the
original recorder did.  The capture is read once into memory before the first call.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import assert_never

from srs.capture import read_capture
from srs.capture.decode import PacketDecoder
from srs.capture.packets import (
    CaptureEvent,
    Datagram,
    Flow,
    StreamChunk,
    StreamClosed,
    StreamGap,
)
from srs.errors import PeerError, SipParseError
from srs.replay.messages import is_siprec_invite, sip_message, stream_messages
from srs.sdp.description import Connection, SessionDescription
from srs.sip.headers import canonical_name
from srs.sip.message import SipMessage, SipRequest, SipResponse
from srs.sip.parser import StreamParser
from srs.siprec.multipart import MediaType, MultipartBody, split_siprec_body

__all__ = [
    "REPLAY_OF_HEADER",
    "CapturePlan",
    "PlannedPacket",
    "PlannedRequest",
    "SessionPlan",
    "carried_headers",
    "plan_capture",
    "rewrite_offer",
    "sdp_of",
]

REPLAY_OF_HEADER = "X-Srs-Replay-Of"
SDP_TYPE = "application/sdp"
# Requests of the dialog that are not replayed as such: our UAC ACKs every 2xx itself
# (RFC 3261 §13.2.2.4), and a CANCEL or PRACK belongs to a transaction of the original.
_NOT_REPLAYED = frozenset({"ACK", "CANCEL", "PRACK"})
# Headers our UAC writes itself (RFC 3261 §8.1.1, §12.2.1.1), and those that must not
# leave: the captured credentials (RFC 3261 §22) and the earlier replay's mark.
_OWN_HEADERS = frozenset({
    "via", "from", "to", "call-id", "cseq", "contact", "max-forwards", "content-length",
    "content-type", "route", "record-route", "allow", "authorization",
    "proxy-authorization", REPLAY_OF_HEADER.lower(),
})


# -- the plan (pure) ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PlannedRequest:
    """A request of the recording client; ``at_s`` is its capture time (Unix seconds)."""

    at_s: float
    request: SipRequest


@dataclass(frozen=True, slots=True)
class PlannedPacket:
    """A datagram to m-line ``index``.  ``rtcp_port``: it went to the answer's port + 1
    (RTCP without rtcp-mux, RFC 3550 §11); ``source`` is the original sender."""

    at_s: float
    index: int
    source: tuple[str, int]
    rtcp_port: bool
    payload: bytes = field(repr=False)

    @property
    def socket_key(self) -> tuple[int, tuple[str, int], bool]:
        return self.index, self.source, self.rtcp_port


@dataclass
class SessionPlan:
    """One captured SIPREC session.  ``answered_at_s``: when the recorder's 2xx to the
    INVITE was captured (None: never answered 2xx, not replayable).  ``statuses``: the
    recorder's final status per (CSeq number, method)."""

    invite: PlannedRequest
    answered_at_s: float | None = None
    requests: list[PlannedRequest] = field(default_factory=list)
    packets: list[PlannedPacket] = field(default_factory=list)
    statuses: dict[tuple[int, str], int] = field(default_factory=dict)
    ended_by_recorder: bool = False

    @property
    def call_id(self) -> str:
        return self.invite.request.call_id

    def status_of(self, request: SipRequest) -> int | None:
        return self.statuses.get((request.cseq.number, request.cseq.method))

    def media_lines(self) -> int:
        """The most m-lines any offer of the session has."""
        count = _media_count(self.invite.request)
        for planned in self.requests:
            count = max(count, _media_count(planned.request))
        return max([count, *(p.index + 1 for p in self.packets)])

    def socket_keys(self) -> list[tuple[int, tuple[str, int], bool]]:
        """Each original (m-line, source, RTCP port) in order of first appearance."""
        return list(dict.fromkeys(p.socket_key for p in self.packets))


@dataclass
class CapturePlan:
    """Every SIPREC session of a capture, in INVITE order; ``unanswered``: the Call-IDs of
    SIPREC INVITEs the recorder never answered 2xx in the capture."""

    sessions: list[SessionPlan] = field(default_factory=list)
    unanswered: list[str] = field(default_factory=list)
    packets: int = 0
    unmatched_rtp: int = 0


def sdp_of(message: SipMessage) -> bytes | None:
    """The SDP of a message's body (alone or a multipart part), None without one."""
    try:
        return split_siprec_body(message.body, message.headers.get("Content-Type"),
                                 require_sdp=False).sdp
    except PeerError:
        return None


def _media_count(request: SipRequest) -> int:
    sdp = sdp_of(request)
    if sdp is None:
        return 0
    try:
        return len(SessionDescription.parse(sdp).media)
    except PeerError:
        return 0


class _Planner:
    """Reads capture events in order and builds the :class:`CapturePlan`."""

    def __init__(self) -> None:
        self.plan = CapturePlan()
        self.recorders: set[tuple[str, int]] = set()
        self.sessions: dict[str, SessionPlan] = {}
        self.seen: set[tuple[str, int, str]] = set()  # (Call-ID, CSeq number, method)
        # (address, port) -> (Call-ID, m-line index), from the recorder's latest answer
        self.routes: dict[tuple[str, int], tuple[str, int]] = {}
        self.parsers: dict[Flow, StreamParser] = {}

    def event(self, event: CaptureEvent) -> None:
        if isinstance(event, Datagram):
            message = sip_message(event.payload)
            if message is None:
                self._media(event)
            else:
                self._sip(message, (event.src, event.sport), (event.dst, event.dport),
                          event.timestamp)
        elif isinstance(event, StreamChunk):
            src, sport, dst, dport = event.flow
            for message in stream_messages(self.parsers, event):
                self._sip(message, (src, sport), (dst, dport), event.timestamp)
        elif isinstance(event, StreamGap):
            self.parsers.pop(event.flow, None)
        elif isinstance(event, StreamClosed):
            pass  # nothing to plan: what the stream carried came in its chunks
        else:
            assert_never(event)

    def _sip(self, message: SipMessage, source: tuple[str, int],
             destination: tuple[str, int], at_s: float) -> None:
        try:
            if isinstance(message, SipResponse):
                if source in self.recorders:
                    self._answer(message, at_s)
                return
            if source in self.recorders:
                session = self.sessions.get(message.call_id)
                if session is not None and message.method == "BYE":
                    session.ended_by_recorder = True  # its own BYE: not ours to replay
                return
            if is_siprec_invite(message):
                self.recorders.add(destination)
                if message.call_id not in self.sessions:
                    self.sessions[message.call_id] = SessionPlan(PlannedRequest(at_s, message))
                return
            session = self.sessions.get(message.call_id)
            if destination not in self.recorders or session is None:
                return
            key = (message.call_id, message.cseq.number, message.method)
            if message.method in _NOT_REPLAYED or key in self.seen:
                return  # retransmissions too (RFC 3261 §17.1)
            self.seen.add(key)
            session.requests.append(PlannedRequest(at_s, message))
        except SipParseError:
            return  # a message without a readable Call-ID or CSeq: skipped, as srs would

    def _answer(self, response: SipResponse, at_s: float) -> None:
        session = self.sessions.get(response.call_id)
        if session is None or response.status < 200:
            return
        cseq = response.cseq
        session.statuses.setdefault((cseq.number, cseq.method), response.status)
        if cseq.method != "INVITE" or response.status >= 300:
            return
        if cseq.number == session.invite.request.cseq.number and session.answered_at_s is None:
            session.answered_at_s = at_s
        sdp = sdp_of(response)
        if sdp is None:
            return
        try:
            answer = SessionDescription.parse(sdp)
        except PeerError:
            return
        for index, media in enumerate(answer.media):
            connection = answer.connection_for(media)
            if media.port and connection is not None:
                self.routes[(connection.host, media.port)] = (response.call_id, index)

    def _media(self, datagram: Datagram) -> None:
        rtcp_port = False
        route = self.routes.get((datagram.dst, datagram.dport))
        if route is None:
            route = self.routes.get((datagram.dst, datagram.dport - 1))
            rtcp_port = route is not None
        session = self.sessions.get(route[0]) if route is not None else None
        if route is None or session is None:
            self.plan.unmatched_rtp += 1
            return
        session.packets.append(PlannedPacket(datagram.timestamp, route[1],
                                             (datagram.src, datagram.sport), rtcp_port,
                                             datagram.payload))

    def finish(self) -> CapturePlan:
        for session in self.sessions.values():
            if session.answered_at_s is None:
                self.plan.unanswered.append(session.call_id)
            else:
                self.plan.sessions.append(session)
        return self.plan


def plan_capture(path: Path) -> CapturePlan:
    """Every SIPREC session of the capture at ``path``.  Raises
    :class:`srs.capture.CaptureFormatError` for a file that is not a capture."""
    planner = _Planner()
    decoder = PacketDecoder()
    with read_capture(path) as reader:
        for packet in reader:
            planner.plan.packets += 1
            for event in decoder.decode(packet):
                planner.event(event)
        for event in decoder.finish():
            planner.event(event)
    return planner.finish()


def rewrite_offer(body: bytes, content_type: str | None, address: str,
                  ports: Sequence[int]) -> bytes:
    """``body`` with its SDP (alone, or the first ``application/sdp`` part of a
    multipart body, as :func:`srs.siprec.multipart.split_siprec_body` picks it) sending from
    ``address``: every ``c=`` names it, and m-line ``i`` offers ``ports[i]`` (a declined
    m-line, port 0, stays declined).  Every other line and part is kept as it was --
    ``a=crypto`` included.  A body without SDP comes back unchanged."""
    if not body or not content_type:
        return body
    media_type = MediaType.parse(content_type)
    if media_type.essence == SDP_TYPE:
        return _rewrite_sdp(body, address, ports)
    if media_type.type != "multipart":
        return body
    multipart = MultipartBody.parse(body, media_type)
    parts = list(multipart.parts)
    for number, part in enumerate(parts):
        try:
            essence = part.content_type.essence
        except PeerError:
            continue
        if essence == SDP_TYPE:
            parts[number] = replace(part, body=_rewrite_sdp(part.body, address, ports))
            break
    return bytes(replace(multipart, parts=tuple(parts)))


def _rewrite_sdp(sdp: bytes, address: str, ports: Sequence[int]) -> bytes:
    description = SessionDescription.parse(sdp)
    ours = Connection("IN", "IP6" if ":" in address else "IP4", address)
    media = []
    for index, section in enumerate(description.media):
        port = section.port if section.port == 0 or index >= len(ports) else ports[index]
        connection = ours if section.connection is not None else None
        media.append(replace(section, port=port, connection=connection))
    session_connection = ours if description.connection is not None or any(
        m.connection is None for m in description.media) else None
    return bytes(replace(description, connection=session_connection, media=tuple(media)))


def carried_headers(request: SipRequest, credential_header: str) -> list[tuple[str, str]]:
    """The captured request's headers that go out again: all but those our UAC writes,
    the credentials and an earlier replay mark."""
    dropped = _OWN_HEADERS | {credential_header.lower()}
    return [(name, value) for name, value in request.headers.items()
            if canonical_name(name) not in dropped]
