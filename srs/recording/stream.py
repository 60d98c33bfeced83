"""One negotiated m-line's media on the event loop: latching, decryption, the timeline.

:class:`StreamState` is the per-packet path of a recording (docs/architecture.md, "Hot
path"): the media shell calls :meth:`StreamState.receive` for every datagram, and once a
tick the recording core takes what the timeline placed (:meth:`StreamState.take_pending`)
and hands it to a file job.  It does no I/O and reads no clock.

:class:`OutputReport` is what a file job reports back about one stream's files (the
worker thread owns the files; the sidecar is built from these reports, never from the
files' objects).
"""

from __future__ import annotations

import functools
from collections.abc import Collection
from dataclasses import dataclass
from typing import Protocol

from srs import codecs
from srs.codecs import Codec
from srs.errors import RtpError
from srs.recording import sidecar as sc
from srs.rtp.packet import is_rtcp
from srs.rtp.sources import MediaSources
from srs.rtp.srtp import AcceptedCrypto, SrtpInbound, SrtpReceiver
from srs.rtp.track import Placed, TrackTimeline
from srs.sdp.answer import AnsweredStream, SupportedCodec
from srs.sdp.description import SessionDescription

__all__ = ["CodecSwitch", "OutputReport", "RELATCH_AFTER_S", "StreamState", "Tap",
           "decoders_for", "supported_codecs"]

# A latched media source silent this long is replaced by the next accepted source that
# sends (a restarted sender on a new port, NAT rebinding, an SBC failing over) rather than
# dropping the rest of the call.  Above the gaps jitter makes (tens to a few hundred ms),
# below the pause of a sender restart; while the latched source sends, other sources are
# counted and dropped (``other_source``).  Sources the stream does not accept at all
# (``media.source``, srs.rtp.sources) never latch: ``foreign_source``.
RELATCH_AFTER_S = 0.5


class Tap(Protocol):
    """A reader of the placed payloads beside the file (live audio out): it reads
    ``pending`` as it grows and is handed each list the stream detaches, before the
    stream lets go of it."""

    def taken(self, batch: list[Placed]) -> None: ...


@dataclass(frozen=True, slots=True)
class CodecSwitch:
    """A new offer's mapping, for the file: ``before`` (placed under the old mapping) is
    laid out first, then ``decoders`` and ``event_rates_hz`` take over."""

    before: list[Placed]
    decoders: dict[int, Codec]
    event_rates_hz: dict[int, int]


@dataclass(frozen=True, slots=True)
class OutputReport:
    """One stream's files as the last file job left them."""

    file: str  # the WAV's name in the session directory
    duration_s: float = 0.0
    trimmed_samples: int = 0
    decode_errors: int = 0  # payloads the codec's decoder refused
    dtmf: tuple[sc.DtmfEvent, ...] = ()
    dtmf_dropped: int = 0  # key presses beyond the sidecar's cap, only counted
    failed: str | None = None  # the storage error that stopped the file
    sha256: str | None = None  # once the file is closed (the final report)


def decoders_for(offer: SessionDescription, index: int,
                 allowed: Collection[str] | None = None) -> dict[int, Codec]:
    """Every payload type of an m-line that srs can decode (explicit rtpmaps and the RFC 3551
    static defaults, as the SDP layer resolves them), each with its ``a=fmtp``
    parameters, limited to ``allowed`` upper-case names when given (``media.codecs``): a
    sender may switch among the offered codecs without a new offer (RFC 3264 §5.1)."""
    media = offer.media[index]
    out: dict[int, Codec] = {}
    for rtpmap in media.rtpmaps:
        codec = codecs.lookup(rtpmap.encoding_name, rtpmap.clock_rate_hz, rtpmap.channels,
                              allowed)
        if codec is not None:
            fmtp = media.fmtp(rtpmap.payload_type)
            if fmtp is None:
                out[rtpmap.payload_type] = codec
            elif codecs.fmtp_supported(codec.encoding_name, params := fmtp.params()):
                out[rtpmap.payload_type] = codec.with_fmtp(params)
    return out


@functools.cache
def supported_codecs(names: tuple[str, ...] = ()) -> tuple[SupportedCodec, ...]:
    """What an answer may choose: the codecs ``names`` lists (``media.codecs``, in its
    order), or every codec srs knows, and of them only those that decode here."""
    have = codecs.available()
    out: list[SupportedCodec] = []
    for name in dict.fromkeys(n.upper() for n in (names or codecs.CODEC_NAMES)):
        if name not in have:
            continue
        if name == "L16":  # RFC 3551 §4.5.11: any rate (in practice), mono or stereo
            out.append(SupportedCodec("L16", None, (None, 1, 2), codecs.L16_RATES_HZ))
        elif name == "OPUS":  # RFC 7587 §7: always opus/48000/2
            out.append(SupportedCodec("opus", 48000, (None, 1, 2)))
        else:
            refused = codecs.UNSUPPORTED_FMTP.get(name, ())
            out.extend(SupportedCodec(c.encoding_name, c.clock_rate_hz, refused_fmtp=refused)
                       for c in codecs.CODECS.values() if c.encoding_name.upper() == name)
    return tuple(out)


class StreamState:
    """One m-line's media on the event loop: source check, latching, timeline, pending
    payloads."""

    __slots__ = (
        "index",
        "stem",
        "label",
        "port",
        "answered",
        "timeline",
        "sample_rate_hz",
        "decoders",
        "event_rates_hz",
        "switches",
        "pending",
        "sources",
        "latched",
        "other_source_packets",
        "last_packet_s",
        "expects_media",
        "receiving",
        "srtp",
        "crypto",
        "capture",
        "tap",
    )

    def __init__(
        self,
        index: int,
        stem: str,
        answered: AnsweredStream,
        timeline: TrackTimeline,
        decoders: dict[int, Codec],
        sources: MediaSources,
        sample_rate_hz: int | None = None,
    ) -> None:
        self.index = index
        self.stem = stem
        self.label = answered.label
        self.port = answered.port
        self.answered = answered
        self.timeline = timeline
        # The WAV's rate: the answered codec's audio rate unless the session fixes one.
        self.sample_rate_hz = sample_rate_hz or timeline.clock_rate_hz
        self.decoders = decoders
        # Payload types whose a=rtpmap rate is not the track's (telephone-event/8000 by
        # Opus), as the file last heard of them.
        self.event_rates_hz = timeline.payload_clock_rates_hz
        # Later offers' codecs, for the file's next write (the worker owns the file).
        self.switches: list[CodecSwitch] = []
        self.pending: list[Placed] = []
        self.sources = sources
        self.latched: tuple[str, int] | None = None
        self.other_source_packets = 0
        self.last_packet_s = 0.0  # arrival of the last packet taken (from the latched source)
        self.expects_media = answered.direction.value != "inactive"
        self.receiving = True
        self.srtp: SrtpInbound | None = None
        self.crypto: AcceptedCrypto | None = None
        # (now, source, datagram) as received, when the session is captured
        self.capture: list[tuple[float, tuple[str, int], bytes]] | None = None
        self.tap: Tap | None = None  # live audio out, when the session is streamed

    def receive(self, data: bytes, source: tuple[str, int], now: float) -> None:
        """The per-packet path: check the source, latch, decrypt (SRTP), hand the datagram
        to the timeline."""
        latched = self.latched
        if latched != source:
            if not self.sources.accepts(source[0]):
                # Counted, and not even captured: an off-path flood grows no file.
                self.timeline.count_drop("foreign_source")
                return
            if self.capture is not None:
                self.capture.append((now, source, data))
            if latched is not None and now - self.last_packet_s < RELATCH_AFTER_S:
                self.other_source_packets += 1
                return
            self.latched = source  # first packet, or the old source went quiet
        elif self.capture is not None:
            self.capture.append((now, source, data))
        srtp = self.srtp
        if srtp is not None:
            try:
                # RFC 5761 §4 tells SRTCP from SRTP by the (unencrypted) packet type.
                if is_rtcp(data):
                    data = srtp.unprotect_rtcp(data, now)
                else:
                    data = srtp.unprotect(data, now)
            except RtpError as error:
                # Failed authentication or replay: dropped and counted, never written
                # (RFC 3711 §3.3); it does not refresh the latch either.
                self.timeline.count_drop(error.drop_reason)
                return
        self.last_packet_s = now
        self.timeline.receive_into(data, now, self.pending)

    def receive_many(self, datagrams: list[bytes], source: tuple[str, int], now: float) -> None:
        """:meth:`receive` for each of ``datagrams``, all from ``source`` at ``now``, in order:
        the source checked once, then one timeline call for the datagrams (SRTP: for each
        run between failed ones), which the compiled walk places in C where it is built
        (:meth:`TrackTimeline.receive_many`).  What is placed and counted is what
        :meth:`receive` for each would place and count."""
        if source != self.latched or self.capture is not None:
            for data in datagrams:
                self.receive(data, source, now)
            return
        srtp = self.srtp
        timeline = self.timeline
        if srtp is None:
            self.last_packet_s = now
            timeline.receive_many(datagrams, now, self.pending)
            return
        plain: list[bytes] = []
        for data in datagrams:
            try:
                plain.append(srtp.unprotect_rtcp(data, now) if is_rtcp(data)
                             else srtp.unprotect(data, now))
            except RtpError as error:
                # As in receive(): the run so far first, so counters keep their order.
                if plain:
                    self.last_packet_s = now
                    timeline.receive_many(plain, now, self.pending)
                    plain = []
                timeline.count_drop(error.drop_reason)
        if plain:
            self.last_packet_s = now
            timeline.receive_many(plain, now, self.pending)

    def take_pending(self, now: float, *, last: bool = False) -> list[Placed]:
        """What was placed since the last take, and what the reorder buffer releases by
        ``now`` (``last``: all it holds, the session is over)."""
        batch = self.pending
        self.pending = []
        released = self.timeline.drain(now)
        if released:
            batch.extend(released)
        if last:
            batch.extend(self.timeline.flush())
        if self.tap is not None:
            self.tap.taken(batch)
        return batch

    def use_offer(self, offered: dict[int, Codec], event_rates_hz: dict[int, int]) -> None:
        """The codecs and telephone-event rates a new offer maps (RFC 3264 §8.3.2: an offer
        may change them, and may give a payload type another codec).  The packets placed so
        far decode with the old mapping, the ones after with the new (resampled to the
        file's rate): the file switches at this point of its next write."""
        added = {pt: c for pt, c in offered.items() if self.decoders.get(pt) != c}
        if not added and event_rates_hz == self.event_rates_hz:
            return
        if self.tap is not None:
            self.tap.taken(self.pending)  # placed under the old mapping
        self.decoders = self.decoders | added
        self.event_rates_hz = event_rates_hz
        self.switches.append(CodecSwitch(self.pending, self.decoders, event_rates_hz))
        self.pending = []

    def take_switches(self) -> tuple[CodecSwitch, ...]:
        """The switches the file makes before its next write, once."""
        switches, self.switches = tuple(self.switches), []
        return switches

    def relatch(self) -> None:
        """Forget the latched source (a re-INVITE may move the sender)."""
        self.latched = None

    def use_crypto(self, accepted: AcceptedCrypto | None, now: float) -> None:
        """Key this stream for the crypto an answer accepted (RFC 4568 §7.1.4: a changed key
        takes over without a gap; an unchanged one keeps the context and its rollover
        counter)."""
        if accepted is None:
            self.srtp, self.crypto = None, None
            return
        if accepted is self.crypto:
            return
        receiver = SrtpReceiver.from_accepted(accepted)
        if self.srtp is None:
            self.srtp = SrtpInbound(receiver)
        else:
            self.srtp.rekey(receiver, now)
        self.crypto = accepted


