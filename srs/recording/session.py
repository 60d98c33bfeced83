"""A recording session: the one place where SIP, SDP, metadata and media meet.

:class:`RecordingSession` holds what srs knows about one SIPREC session (RFC 7866): the
call facts from the dialog-creating INVITE, the merged RFC 7865 metadata and every raw
version of it, the negotiated streams (:class:`~srs.recording.stream.StreamState`), and
each stream's track timeline.  It answers SDP offers (the INVITE's and every
re-INVITE/UPDATE's) and turns all of it into the sidecar.  It does no I/O and reads no
clock: the recording core (:mod:`srs.recording.core`) drives it, and file jobs report
back what they wrote as :class:`~srs.recording.stream.OutputReport`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from srs import codecs
from srs.errors import SdpError
from srs.recording import sidecar as sc
from srs.recording.layout import metadata_file_name, unique_stream_stem
from srs.recording.stream import OutputReport, StreamState, decoders_for, supported_codecs
from srs.rtp.sources import DEFAULT_POLICY, MediaSources, SourcePolicy
from srs.rtp.srtp import (
    AcceptedCrypto,
    NoAcceptableCrypto,
    SrtpPolicy,
    choose_answer_crypto,
    policy_decline_reason,
)
from srs.rtp.track import TrackTimeline
from srs.sdp.answer import AnsweredStream, SdpAnswer, build_answer
from srs.sdp.description import SessionDescription
from srs.sip.message import SipRequest
from srs.siprec.metadata import RecordingMetadata
from srs.siprec.metadata_state import MetadataState

__all__ = [
    "CallInfo",
    "call_info_from_invite",
    "RecordingSession",
    "MAX_HEADER_PARAMETERS",
]

# Custom parameters taken from X- headers: bounded in count and size (hostile input).
MAX_HEADER_PARAMETERS = 64
MAX_PARAMETER_CHARS = 1024
# RFC 4566 §5.2: our o= username; the session id is per session, the version counts up.
ORIGIN_USERNAME = "srs"

_TWILIO_CALL_SID = "x-twilio-callsid"
_TWILIO_ACCOUNT_SID = "x-twilio-accountsid"


@dataclass(frozen=True, slots=True)
class CallInfo:
    """Facts of the dialog-creating INVITE, for the sidecar."""

    call_id: str
    from_: str
    to: str
    request_uri: str
    source: sc.Source
    user_agent: str | None
    twilio: sc.TwilioIds | None
    header_parameters: Mapping[str, str]


def call_info_from_invite(
    request: SipRequest, host: str, port: int, transport: str, *, credential_header: str
) -> CallInfo:
    """Collect the call facts.  ``X-`` headers become custom parameters, except the
    credential header, which is never stored."""
    secret = credential_header.lower()
    params: dict[str, str] = {}
    call_sid = account_sid = None
    for name, value in request.headers.items():
        lowered = name.lower()
        if lowered == secret or not lowered.startswith("x-"):
            continue
        if lowered == _TWILIO_CALL_SID:
            call_sid = value[:MAX_PARAMETER_CHARS]
        elif lowered == _TWILIO_ACCOUNT_SID:
            account_sid = value[:MAX_PARAMETER_CHARS]
        if len(params) < MAX_HEADER_PARAMETERS:
            params[name[:MAX_PARAMETER_CHARS]] = value[:MAX_PARAMETER_CHARS]
    twilio = sc.TwilioIds(call_sid, account_sid) if call_sid or account_sid else None
    return CallInfo(
        call_id=request.call_id,
        from_=request.headers.get("From") or "",
        to=request.headers.get("To") or "",
        request_uri=str(request.uri),
        source=sc.Source(host, port, transport),
        user_agent=request.headers.get("User-Agent"),
        twilio=twilio,
        header_parameters=params,
    )


@dataclass
class RecordingSession:
    """What srs knows about one recording session (see module docstring)."""

    info: CallInfo
    started_at: datetime
    origin_s: float
    media_address: str
    sdp_session_id: str
    srtp_policy: SrtpPolicy = "allow"
    source_policy: SourcePolicy = DEFAULT_POLICY
    # media.codecs: the codecs answered, in this order of preference (empty: every codec
    # srs decodes, in the offer's order); recordings.sample_rate (0: each codec's own).
    codec_names: tuple[str, ...] = ()
    sample_rate_hz: int = 0
    streams: list[StreamState] = field(default_factory=list)
    metadata: MetadataState | None = None
    metadata_updates: list[sc.MetadataUpdate] = field(default_factory=list)
    answer_version: int = 0
    last_answer: bytes = b""
    # The live-audio consumers' counters, when the session is streamed (set by the shell
    # that streams it; read for every sidecar).
    streams_out: Callable[[], tuple[sc.StreamOut, ...]] | None = None

    @property
    def session_id(self) -> str:
        """The SIPREC session id from metadata (RFC 7865 §6.6), else the Call-ID."""
        if self.metadata is not None and self.metadata.current.sessions:
            return self.metadata.current.sessions[0].session_id
        return self.info.call_id

    # -- offer/answer -------------------------------------------------------------------

    def acceptable(self, offer: SessionDescription) -> list[bool]:
        """Which m-lines of ``offer`` srs can take (before any port is allocated).

        Raises SdpError / NoAcceptableCrypto (488) when none can be taken.
        """
        probe = [9] * len(offer.media)  # any non-zero port: only acceptance is asked
        for stream in self.streams:
            if stream.index < len(probe):
                probe[stream.index] = stream.port
        crypto = self._crypto_plan(offer, probe)
        answer = self._build(offer, probe, crypto, version=self.answer_version)
        return [s.accepted for s in answer.streams]

    def _crypto_plan(self, offer: SessionDescription,
                     ports: list[int]) -> list[AcceptedCrypto | None]:
        """Per m-line: the SDES crypto srs accepts (RFC 4568 §7.1.2), or None.  Lines the
        SRTP policy (``media.srtp``) refuses get port 0 in ``ports``.  When nothing at all
        is left, raises the most telling 488: the crypto or the policy problem."""
        plan: list[AcceptedCrypto | None] = []
        problems: list[Exception] = []
        previous = {s.index: s.crypto for s in self.streams}
        for index, media in enumerate(offer.media):
            accepted = None
            refused = policy_decline_reason(media.is_secure, self.srtp_policy)
            if refused is not None:
                ports[index] = 0
                problems.append(SdpError(f"Not Acceptable Here: {refused}"))
            elif media.is_secure:
                try:
                    accepted = choose_answer_crypto(media.crypto, previous=previous.get(index))
                except NoAcceptableCrypto as exc:
                    problems.append(exc)
            plan.append(accepted)
        if problems and not any(ports[i] and (plan[i] or not m.is_secure)
                                for i, m in enumerate(offer.media)):
            raise problems[0]
        return plan

    def answer_offer(
        self, offer: SessionDescription, ports: Mapping[int, int], now: float
    ) -> tuple[bytes, list[StreamState], list[StreamState]]:
        """Answer ``offer`` with stable ports: existing streams keep theirs, new m-lines
        take ``ports[index]``.  Returns the answer and the streams started and stopped.
        An m-line that was stopped (port 0, RFC 3264 §8.2) and is offered again with the
        same label and clock rate takes a new port but resumes its own track and file, with
        silence in between and fresh RTP sequence state; offered with another label, the slot
        is a new stream (RFC 3264 §8.1) with its own file.

        Raises SdpError (488) when nothing is acceptable.
        """
        local_ports = [0] * len(offer.media)
        by_index = {s.index: s for s in self.streams if s.receiving}
        stopped_before = {s.index: s for s in self.streams if not s.receiving}
        for index in range(len(offer.media)):
            if index in by_index:
                local_ports[index] = by_index[index].port
            elif index in ports:
                local_ports[index] = ports[index]
        crypto = self._crypto_plan(offer, local_ports)
        answer = self._build(offer, local_ports, crypto, version=self.answer_version + 1)
        self.answer_version += 1
        self.last_answer = bytes(answer)
        started: list[StreamState] = []
        stopped: list[StreamState] = []
        for answered in answer.streams:
            existing = by_index.get(answered.index)
            if existing is not None and not answered.accepted:
                existing.receiving = False
                stopped.append(existing)
            elif existing is not None:
                self._update_stream(existing, offer, answered)
                existing.use_crypto(crypto[answered.index], now)
            elif answered.accepted:
                stream = stopped_before.get(answered.index)
                if stream is not None and _resumes(stream, answered):
                    stream.port, stream.receiving = answered.port, True
                    stream.pending.extend(stream.timeline.restart("stream_resumed"))
                    self._update_stream(stream, offer, answered)
                else:
                    stream = self._new_stream(offer, answered)
                    self.streams.append(stream)
                stream.use_crypto(crypto[answered.index], now)
                started.append(stream)
        return self.last_answer, started, stopped

    def _build(self, offer: SessionDescription, ports: Sequence[int],
               crypto: Sequence[AcceptedCrypto | None], *, version: int) -> SdpAnswer:
        return build_answer(
            offer,
            origin_username=ORIGIN_USERNAME,
            origin_session_id=self.sdp_session_id,
            origin_session_version=version,
            media_address=self.media_address,
            local_ports=ports,
            codecs=supported_codecs(self.codec_names),
            answer_crypto=[c.answer if c is not None else None for c in crypto],
            our_order=bool(self.codec_names),
        )

    def _allowed(self) -> frozenset[str] | None:
        return frozenset(n.upper() for n in self.codec_names) if self.codec_names else None

    def _new_stream(self, offer: SessionDescription, answered: AnsweredStream) -> StreamState:
        taken = {s.stem for s in self.streams}
        stem = unique_stream_stem(answered.label, answered.index + 1, taken)
        clock = answered.clock_rate_hz or 8000
        te = answered.telephone_event_payload_type
        timeline = TrackTimeline(
            self.origin_s, clock, event_payload_types=() if te is None else (te,)
        )
        decoders = decoders_for(offer, answered.index, self._allowed())
        timeline.accept_payload_types(offer.media[answered.index].payload_types, decoders,
                                      clock_rates_hz=_clock_rates(offer, answered.index))
        chosen = decoders.get(answered.payload_type) if answered.payload_type is not None \
            else None
        rate = self.sample_rate_hz or (chosen.sample_rate_hz if chosen is not None else clock)
        if clock == 8000:
            # RFC 3551 §6: PCMU and PCMA sent without being offered still mean just that
            # (the timeline counts them as unoffered_static).
            decoders = {0: codecs.PCMU, 8: codecs.PCMA} | decoders
        sources = MediaSources(self.source_policy, offer_host=_offer_host(offer, answered.index),
                               signalling_host=self.info.source.address)
        return StreamState(answered.index, stem, answered, timeline, decoders, sources, rate)

    def _update_stream(
        self, stream: StreamState, offer: SessionDescription, answered: AnsweredStream
    ) -> None:
        """A new offer for an existing stream: direction, codec set; the port is stable.
        A codec the new offer maps is decoded from the packets placed after it on."""
        offered = decoders_for(offer, answered.index, self._allowed())
        stream.answered = answered
        stream.expects_media = answered.direction.value != "inactive"
        stream.timeline.accept_payload_types(offer.media[answered.index].payload_types,
                                             stream.decoders | offered,
                                             answered.telephone_event_payload_type,
                                             _clock_rates(offer, answered.index))
        stream.use_offer(offered, stream.timeline.payload_clock_rates_hz)
        stream.sources.offer(_offer_host(offer, answered.index))
        stream.relatch()

    # -- metadata -----------------------------------------------------------------------

    def apply_metadata(self, raw: bytes, parsed: RecordingMetadata, received_at: datetime,
                       method: str) -> int:
        """Merge a metadata version (RFC 7865 §6.1); return its number N (metadata-N.xml)."""
        base = self.metadata if self.metadata is not None else MetadataState()
        self.metadata = base.apply(parsed)
        n = len(self.metadata_updates) + 1
        self.metadata_updates.append(sc.MetadataUpdate(
            n=n, received_at=received_at, file=metadata_file_name(n), method=method
        ))
        return n

    # -- sidecar ------------------------------------------------------------------------

    def custom_parameters(self) -> dict[str, str]:
        params = dict(self.info.header_parameters)
        if self.metadata is not None:
            params.update(self.metadata.custom_parameters())
        return params

    def participants(self) -> tuple[sc.Participant, ...]:
        if self.metadata is None:
            return ()
        sends: dict[str, list[str]] = {}
        for stream in self.streams:
            if stream.label is None:
                continue
            for sender in self.metadata.parties_for_label(stream.label).senders:
                sends.setdefault(sender.participant_id, []).append(stream.stem)
        return tuple(
            sc.Participant(id=p.participant_id, name=p.name, aor=p.aor,
                           sends=tuple(sends.get(p.participant_id, ())))
            for p in self.metadata.current.participants
        )

    def stream_participant(self, stream: StreamState) -> str | None:
        if self.metadata is None or stream.label is None:
            return None
        senders = self.metadata.parties_for_label(stream.label).senders
        return senders[0].participant_id if senders else None

    def mix_order(self) -> tuple[StreamState, StreamState] | None:
        """The two streams of ``mix.wav``, left then right, or None.

        Twilio labels its forks by direction: the ``inbound`` track (audio from the
        caller's side into Twilio) goes left, ``outbound`` right.  Without such labels the
        offer's order decides: first m-line left.
        """
        streams = self.streams
        if len(streams) != 2:
            return None
        def rank(stream: StreamState) -> int:
            label = (stream.label or "").lower()
            return 0 if "inbound" in label else 2 if "outbound" in label else 1
        ranked = sorted(streams, key=lambda s: (rank(s), s.index))
        return ranked[0], ranked[1]

    def sidecar(self, reports: Mapping[str, OutputReport], status: sc.SessionStatus, *,
                ended_at: datetime | None = None, end_reason: sc.EndReason | None = None,
                mix: sc.MixRecord | None = None, mix_skipped: str | None = None,
                error: str | None = None) -> sc.SessionSidecar:
        """Everything known about the session, as ``session.json`` says it: the track
        counters (read on the event loop, which owns them) and what the file jobs reported
        of each stream with files."""
        streams = []
        dtmf: list[sc.DtmfEvent] = []
        for stream in self.streams:
            report = reports.get(stream.stem)
            if report is None:
                continue
            stats = stream.timeline.stats()
            dropped = dict(stats.dropped)
            if stream.other_source_packets:
                dropped["other_source"] = stream.other_source_packets
            streams.append(sc.StreamRecord(
                label=stream.stem, file=report.file,
                codec=stream.answered.encoding_name or "unknown",
                clock_rate=stream.timeline.clock_rate_hz,
                sample_rate=stream.sample_rate_hz,
                srtp=stream.crypto.suite.name if stream.crypto is not None else None,
                participant=self.stream_participant(stream),
                ssrcs=stats.ssrcs,
                packets=sc.PacketCounts(received=stats.received, lost=stats.lost,
                                        duplicated=stats.duplicated, reordered=stats.reordered,
                                        late=stats.late, dropped=dropped,
                                        rtcp=stats.rtcp_packets,
                                        unoffered_static=stats.unoffered_static),
                jitter_ms=round(max(stats.jitter_ms.values(), default=0.0), 3),
                duration_s=round(report.duration_s, 3),
                trimmed_samples=report.trimmed_samples,
                resyncs=dict(stats.resyncs),
                decode_errors=report.decode_errors,
                dtmf_dropped=report.dtmf_dropped,
                sha256=report.sha256,
            ))
            dtmf.extend(report.dtmf)
        return sc.SessionSidecar(
            status=status, call_id=self.info.call_id, from_=self.info.from_,
            to=self.info.to, request_uri=self.info.request_uri,
            source=self.info.source, user_agent=self.info.user_agent,
            siprec=self.siprec_ids(), twilio=self.info.twilio,
            custom_parameters=self.custom_parameters(),
            participants=self.participants(), streams=tuple(streams), mix=mix,
            mix_skipped_reason=mix_skipped, started_at=self.started_at, ended_at=ended_at,
            end_reason=end_reason, metadata_updates=tuple(self.metadata_updates),
            dtmf=tuple(sorted(dtmf, key=lambda d: d.at_s)),
            streams_out=self.streams_out() if self.streams_out is not None else (), error=error,
        )

    def expired(self, now: float, rtp_timeout_s: float, max_session_s: float) -> str | None:
        """Why the session should end at ``now``, or None: it lasted ``max_session_s``, or
        no stream that is expected to send (not on hold) sent for ``rtp_timeout_s``."""
        if now - self.origin_s >= max_session_s:
            return "max_session_s"
        if not any(s.expects_media and s.receiving for s in self.streams):
            return None  # on hold: no media is expected
        last = max((s.last_packet_s for s in self.streams), default=0.0)
        if now - max(last, self.origin_s) >= rtp_timeout_s:
            return "rtp_timeout_s"
        return None

    def siprec_ids(self) -> sc.SiprecIds:
        if self.metadata is None:
            return sc.SiprecIds()
        current = self.metadata.current
        session_id = current.sessions[0].session_id if current.sessions else None
        group_id = current.groups[0].group_id if current.groups else None
        return sc.SiprecIds(session_id=session_id, group_id=group_id)


def _clock_rates(offer: SessionDescription, index: int) -> dict[int, int]:
    """Each payload type's ``a=rtpmap`` clock rate on m-line ``index`` (RFC 4566 §6)."""
    return {m.payload_type: m.clock_rate_hz for m in offer.media[index].rtpmaps}


def _offer_host(offer: SessionDescription, index: int) -> str | None:
    """The connection address the offer gives m-line ``index`` (RFC 4566 §5.7)."""
    connection = offer.connection_for(offer.media[index])
    return connection.host if connection is not None else None


def _resumes(stream: StreamState, answered: AnsweredStream) -> bool:
    """Whether a stopped stream continues as ``answered``: the same party's stream again
    (same label, or none both times) at the same clock rate."""
    return (stream.answered.label == answered.label
            and stream.timeline.clock_rate_hz == answered.clock_rate_hz)
