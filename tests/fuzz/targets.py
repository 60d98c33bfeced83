"""Fuzz targets: one function a parser (or the whole receive path), bytes in.

Each target feeds its input to srs's real code and lets through only the errors that code
documents for bad input: :class:`~srs.errors.PeerError` (the peer's fault, with its SIP
status) and, for capture files, :class:`~srs.capture.errors.CaptureFormatError`.  Anything
else -- an ``IndexError``, a ``UsageError``, a ``RecursionError`` -- escapes and is a
finding.  Targets are deterministic for a given input, except ``receive``, whose core
keeps its state across inputs as a long-running server does (it is rebuilt every
:data:`RECEIVE_INPUTS_PER_HOST` inputs to bound its files).

The same functions run three ways: every seed of ``tests/data/fuzz/<target>`` in
``make test`` (tests/fuzz/test_fuzz.py), a short coverage-guided run of each in
``make test``, and a long one by ``make fuzz`` (tests/fuzz/run.py).
"""

from __future__ import annotations

import contextlib
import io
import re
import shutil
import struct
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pylibsrtp

from srs.capture.decode import PacketDecoder
from srs.capture.errors import CaptureFormatError
from srs.capture.reader import read_capture
from srs.errors import PeerError
from srs.recording.outputs import Answer, Drain, OpenPorts, Request
from srs.recording.wav import RecordingIOError
from srs.replay.plan import _Planner
from srs.rtp.dtmf import DtmfDetector
from srs.rtp.packet import RtcpCompound, RtpPacket, is_rtcp
from srs.rtp.srtp import SUITES, SrtpReceiver, choose_answer_crypto
from srs.rtp.track import Placed, TrackTimeline
from srs.sdp.description import SessionDescription
from srs.sip.message import SipRequest
from srs.sip.parser import (
    MAX_MESSAGE_BYTES,
    SipMessageError,
    StreamParser,
    build_error_response,
    parse_message,
)
from srs.sip.uas import Transmit
from srs.siprec.metadata import RecordingMetadata
from srs.siprec.metadata_state import MetadataState
from srs.siprec.multipart import split_siprec_body
from tests.recording.corehost import PEER, CoreHost

__all__ = ["TARGETS", "Target", "RECEIVE_INPUTS_PER_HOST", "records", "record"]

Target = Callable[[bytes], None]


def records(data: bytes) -> list[tuple[int, bytes]]:
    """Split ``data`` into (kind, payload) records: one kind byte, a 2-byte big-endian
    length, the payload.  A short tail is one last record of what is left, so every input
    means something."""
    out: list[tuple[int, bytes]] = []
    pos = 0
    while pos < len(data):
        kind = data[pos]
        if pos + 3 > len(data):
            out.append((kind, data[pos + 1:]))
            break
        (length,) = struct.unpack_from("!H", data, pos + 1)
        out.append((kind, data[pos + 3:pos + 3 + length]))
        pos += 3 + length
    return out


def record(kind: int, payload: bytes) -> bytes:
    """One record as :func:`records` reads it (for writing seeds)."""
    return struct.pack("!BH", kind, len(payload)) + payload


# -- SIP --------------------------------------------------------------------------------


def sip_datagram(data: bytes) -> None:
    """One UDP datagram; a request that fails to parse gets its 400 built as srs builds it."""
    try:
        message = parse_message(data)
    except SipMessageError as error:
        build_error_response(error)
        return
    if isinstance(message, SipRequest):
        for name in ("Via", "From", "To", "Call-ID", "CSeq", "Contact", "Session-Expires"):
            message.headers.get_all(name)
        try:
            _ = message.top_via, message.to, message.from_, message.cseq, message.call_id
        except PeerError:
            return


def sip_stream(data: bytes) -> None:
    """A TCP byte stream cut into segments at every record boundary."""
    parser = StreamParser()
    for _kind, chunk in records(data):
        try:
            parser.feed(chunk)
        except SipMessageError as error:
            build_error_response(error)
            if error.framing_lost:
                return


# -- bodies -----------------------------------------------------------------------------

_CONTENT_TYPES = (
    "multipart/mixed;boundary=b", "multipart/mixed;boundary=\"a b\"", "application/sdp",
    "application/rs-metadata+xml", "multipart/mixed", "text/plain",
)


def multipart(data: bytes) -> None:
    """A SIPREC body under one of several Content-Types, chosen by the first byte."""
    if not data:
        return
    content_type = _CONTENT_TYPES[data[0] % len(_CONTENT_TYPES)]
    try:
        body = split_siprec_body(data[1:], content_type, require_sdp=False)
    except PeerError:
        return
    if body.sdp is not None:
        sdp(body.sdp)
    if body.metadata is not None:
        metadata(body.metadata)


def sdp(data: bytes) -> None:
    """An offer: parsed, written back, and its SRTP lines chosen from as an answer does."""
    try:
        offer = SessionDescription.parse(data)
    except PeerError:
        return
    again = SessionDescription.parse(bytes(offer))
    assert len(again.media) == len(offer.media), "an SDP srs wrote does not read back"
    for media in offer.media:
        offer.connection_for(media)
        if media.is_secure:
            try:
                choose_answer_crypto(media.crypto)
            except PeerError:
                continue


def metadata(data: bytes) -> None:
    """RFC 7865 documents, each record one update merged into the state."""
    state = MetadataState()
    for _kind, chunk in records(data)[:8]:
        try:
            state = state.apply(RecordingMetadata.parse(chunk))
        except PeerError:
            continue


# -- media ------------------------------------------------------------------------------

# A fixed master key and salt: SRTP inputs the fuzzer makes rarely authenticate, but the
# parse, length and replay checks in front of libsrtp all run.
_SRTP_KEY = bytes(range(30))


def rtp(data: bytes) -> None:
    """Datagrams of one track: RTP and RTCP parsed, placed on a timeline, DTMF collapsed.
    A record's kind byte is the arrival time step, in milliseconds; the datagrams of a
    zero step also go, together, to a second timeline's ``receive_many`` (the compiled
    walk where it is built), which must place the same."""
    rates = {0: 8000, 8: 8000, 9: 8000, 101: 8000, 96: 16000}
    timeline, walked = (TrackTimeline(0.0, 8000, event_payload_types=(101,),
                                      payload_clock_rates_hz=rates) for _ in range(2))
    dtmf = DtmfDetector(8000)
    now = 0.0
    batch: list[bytes] = []
    expected: list[Placed] = []
    for step, datagram in records(data)[:512]:
        if step and batch:
            _same_placements(walked, batch, now, expected)
        now += step / 1000.0
        if is_rtcp(datagram):
            with contextlib.suppress(PeerError):
                RtcpCompound.parse(datagram)
        placed = timeline.receive(datagram, now)
        batch.append(datagram)
        expected += placed
        drained = timeline.drain(now)
        if drained:
            _same_placements(walked, batch, now, expected)
            if _fields(walked.drain(now)) != _fields(drained):
                raise AssertionError("receive_many's timeline drained otherwise")
        placed += drained
        for item in placed:
            if item.is_event:
                dtmf.push(item)
    if batch:
        _same_placements(walked, batch, now, expected)
    if _fields(walked.flush()) != _fields(timeline.flush()):
        raise AssertionError("receive_many's timeline flushed otherwise")
    timeline.finish(now)
    walked.finish(now)
    if walked.stats() != timeline.stats():
        raise AssertionError("receive_many counted otherwise")
    dtmf.finish()


def _fields(placed: list[Placed]) -> list[tuple[object, ...]]:
    return [(p.offset_samples, p.payload_type, p.payload, p.ssrc, p.timestamp, p.is_event)
            for p in placed]


def _same_placements(walked: TrackTimeline, batch: list[bytes], now: float,
                     expected: list[Placed]) -> None:
    got: list[Placed] = []
    walked.receive_many(batch, now, got)
    if _fields(got) != _fields(expected):
        raise AssertionError("receive_many placed otherwise than receive")
    batch.clear()
    expected.clear()


def srtp(data: bytes) -> None:
    """SRTP and SRTCP datagrams to one receiver; what authenticates is parsed as RTP.
    A record of odd kind is protected with the receiver's key first (when libsrtp takes it
    as RTP), so authentic packets of every shape reach the replay check and the parser."""
    receiver = SrtpReceiver(SUITES["AES_CM_128_HMAC_SHA1_80"], _SRTP_KEY)
    sender = pylibsrtp.Session(pylibsrtp.Policy(
        key=_SRTP_KEY, ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND,
        srtp_profile=pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80))
    for kind, datagram in records(data)[:64]:
        if kind % 2 and len(datagram) >= 12:
            # What libsrtp would not send is fed as it is.
            with contextlib.suppress(pylibsrtp.Error, ValueError):  # ValueError: too long
                datagram = sender.protect(datagram)
        try:
            plain = (receiver.unprotect_rtcp(datagram) if is_rtcp(datagram)
                     else receiver.unprotect(datagram))
            RtpPacket.parse(plain)
        except PeerError:
            continue


# -- captures ---------------------------------------------------------------------------


def pcap(data: bytes) -> None:
    """A capture file (pcap or pcapng): packets decoded (IP fragments, TCP reassembly) and
    planned for replay, as ``srs replay`` reads one."""
    planner = _Planner()
    decoder = PacketDecoder()
    try:
        with read_capture(io.BytesIO(data)) as reader:
            for packet in reader:
                for event in decoder.decode(packet):
                    planner.event(event)
    except CaptureFormatError:
        return
    for event in decoder.finish():
        planner.event(event)
    planner.finish()


# -- the server's receive path ----------------------------------------------------------

RECEIVE_INPUTS_PER_HOST = 500
MAX_RECEIVE_RECORDS = 96
_host: _Host | None = None
_host_dir: Path | None = None
_host_inputs = 0

# Record kinds of the receive target.
SIP, RTP, TICK = 0, 1, 2
# In a SIP record, TO_TAG stands for the To tag of srs's last 2xx, so seeds (and what the
# fuzzer makes of them) can reach in-dialog requests: ACK, re-INVITE, UPDATE, BYE.
TO_TAG = b"srs-to-tag"
_TO_TAG = re.compile(rb"\r\nTo:[^\r]*;tag=([^;\r\s]+)", re.IGNORECASE)
# Where RTP comes from: the SIP peer's host (the call's sender), and an off-path host.
_SOURCES = ((PEER.host, 40000), ("198.51.100.7", 41000))


class _Host(CoreHost):
    """A CoreHost that keeps what srs sends as bytes: a 400 to a request without a CSeq
    carries none either (RFC 3261 §8.2.6.2 copies what was there), which the test host's
    strict parse of its own wire would refuse."""

    def execute(self, outputs: Sequence[Any]) -> None:
        kept = []
        for output in outputs:
            if isinstance(output, Transmit):
                assert len(output.data) <= MAX_MESSAGE_BYTES, "srs sent an over-large message"
                self.wire_bytes += len(output.data)
                found = _TO_TAG.search(output.data)
                if found is not None and output.data.startswith(b"SIP/2.0 2"):
                    self.to_tag = found.group(1)
            else:
                kept.append(output)
        super().execute(kept)

    def _serve(self, request: Request) -> list[Any]:
        """File jobs run as in CoreHost, but a job that raises anything but a disk error
        is a finding, not a failed session."""
        if isinstance(request.work, OpenPorts | Drain | Answer):
            return super()._serve(request)
        try:
            result = request.work.run()
        except (OSError, RecordingIOError) as exc:
            return self.recorder.complete(request.id, None, exc, self.now)
        return self.recorder.complete(request.id, result, None, self.now)

    wire_bytes = 0
    to_tag = b"none"  # of srs's last 2xx: seeds say TO_TAG where an in-dialog request needs it


def _fresh_host() -> _Host:
    global _host, _host_dir, _host_inputs
    if _host_dir is not None:
        shutil.rmtree(_host_dir, ignore_errors=True)
    _host_dir = Path(tempfile.mkdtemp(prefix="srs-fuzz-"))
    _host = _Host(_host_dir)
    _host_inputs = 0
    return _host


def receive(data: bytes) -> None:
    """What ``srs serve`` does with what arrives: SIP datagrams through the parser, the
    SIP core and the recording core (SDP, multipart, metadata, answers, files), RTP to the
    streams it opened, and time passing (recording ticks, SIP timers).

    Records: kind % 3 == 0 a SIP datagram; 1 an RTP datagram for stream ``kind // 6``,
    from the call's sender when ``kind // 3`` is even and from an off-path host when odd;
    2 the clock advancing by ``payload[0]`` tenths of a second."""
    global _host_inputs
    host = _host if _host is not None and _host_inputs < RECEIVE_INPUTS_PER_HOST else None
    if host is None:
        host = _fresh_host()
    _host_inputs += 1
    for kind, payload in records(data)[:MAX_RECEIVE_RECORDS]:
        what = kind % 3
        if what == SIP:
            payload = payload.replace(TO_TAG, host.to_tag)
            try:
                message = parse_message(payload)
            except SipMessageError as error:
                host.execute(host.sip.parse_failed(error, PEER, host.now))
                continue
            host.execute(host.sip.receive(message, PEER, host.now))
        elif what == RTP:
            streams = list(host.streams.values())
            if streams:
                stream = streams[(kind // 6) % len(streams)]
                stream.receive(payload, _SOURCES[(kind // 3) % 2], host.now)
        else:
            host.advance((payload[0] if payload else 1) / 10.0)


TARGETS: dict[str, Target] = {
    "sip": sip_datagram,
    "sip_stream": sip_stream,
    "multipart": multipart,
    "sdp": sdp,
    "metadata": metadata,
    "rtp": rtp,
    "srtp": srtp,
    "pcap": pcap,
    "receive": receive,
}
