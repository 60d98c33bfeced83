"""Sidecar values shared by the recording tests."""

from __future__ import annotations

from datetime import UTC, datetime

from srs.recording.sidecar import (
    DtmfEvent,
    MetadataUpdate,
    MixRecord,
    PacketCounts,
    Participant,
    SessionSidecar,
    SiprecIds,
    Source,
    StreamRecord,
    TwilioIds,
)

STARTED_AT = datetime(2026, 11, 23, 10, 15, 0, 250_000, tzinfo=UTC)


def recording_sidecar(*, streams: tuple[StreamRecord, ...] = ()) -> SessionSidecar:
    """A minimal sidecar as written at the start of a session."""
    return SessionSidecar(call_id="c1@0.0.0.0", started_at=STARTED_AT, streams=streams)


def stream(label: str, file: str, *, clock_rate: int = 8000) -> StreamRecord:
    return StreamRecord(label=label, file=file, codec="PCMU", clock_rate=clock_rate)


def twilio_sidecar() -> SessionSidecar:
    """A sidecar with every field filled, as for a Twilio call while it records."""
    return SessionSidecar(
        call_id="a84b4c76e66710@0.0.0.0",
        started_at=STARTED_AT,
        from_="<sip:+15550001111@twilio.com>;tag=1",
        to="<sip:srs@example.net>",
        request_uri="sip:srs@example.net:5061;transport=tls",
        source=Source("54.172.60.1", 5061, "tls"),
        user_agent="Twilio Gateway",
        siprec=SiprecIds(session_id="ZmFrZXNlc3Npb24=", group_id="ZmFrZWdyb3Vw"),
        twilio=TwilioIds(call_sid="CA" + "0" * 32, account_sid="AC" + "1" * 32),
        custom_parameters={"customer": "42", "queue": "support"},
        participants=(
            Participant("p1", "Caller", "sip:+15550001111@twilio.com", ("inbound_track",)),
            Participant("p2", None, None, ("outbound_track",)),
        ),
        streams=(
            StreamRecord(
                label="inbound_track",
                file="inbound_track.wav",
                codec="PCMU",
                clock_rate=8000,
                sample_rate=8000,
                srtp="AES_CM_128_HMAC_SHA1_80",
                participant="p1",
                ssrcs=(0x1234_5678, 0xFFFF_FFFF),
                packets=PacketCounts(500, 2, 1, 3, 1, {"srtp_auth": 4}),
                jitter_ms=1.5,
                duration_s=10.0,
                resyncs={"timestamp_jump": 1},
            ),
            stream("outbound_track", "outbound_track.wav"),
        ),
        mix=MixRecord("mix.wav", ("inbound_track", "outbound_track")),
        metadata_updates=(
            MetadataUpdate(1, STARTED_AT, "metadata-1.xml", "INVITE"),
            MetadataUpdate(2, STARTED_AT, "metadata-2.xml", "UPDATE"),
        ),
        dtmf=(DtmfEvent("5", 3.25, 120, "inbound_track"), DtmfEvent("flash", 4.0, 0)),
    )
