"""The Twilio-shaped offer of srs.client.offer, read back with srs's own parsers."""

from __future__ import annotations

import pytest

from srs.client.call import Target
from srs.client.offer import (
    OfferedTrack,
    new_identity,
    offer_sdp,
    read_answer,
    recording_metadata,
    siprec_body,
    srtp_suite,
)
from srs.errors import SdpError, UsageError
from srs.sdp.description import Direction, SessionDescription
from srs.siprec.metadata import RecordingMetadata, custom_parameters
from srs.siprec.multipart import split_siprec_body


def tracks(srtp: str | None = None) -> list[OfferedTrack]:
    suite = srtp_suite(srtp) if srtp else None
    return [OfferedTrack.make("inbound", 4000, "sip:alice@example.com", suite),
            OfferedTrack.make("outbound", 4002, "sip:bob@example.com", suite)]


def test_offer_has_one_labelled_sendonly_m_line_per_track() -> None:
    identity = new_identity()
    sdp = SessionDescription.parse(offer_sdp("127.0.0.1", tracks(), session_id=7))
    assert [(m.port, m.label, m.direction, m.proto, m.formats) for m in sdp.media] == [
        (4000, "inbound", Direction.SENDONLY, "RTP/AVP", ("0", "8")),
        (4002, "outbound", Direction.SENDONLY, "RTP/AVP", ("0", "8")),
    ]
    assert sdp.origin.session_id == "7" and identity.call_id.endswith("@0.0.0.0")
    assert identity.call_sid.startswith("CA") and len(identity.call_sid) == 34
    assert identity.account_sid.startswith("AC")


def test_srtp_offer_carries_our_key_per_m_line() -> None:
    offered = tracks("aes_cm_128_hmac_sha1_32")
    sdp = SessionDescription.parse(offer_sdp("::1", offered, session_id=1, version=3,
                                             direction=Direction.INACTIVE))
    assert sdp.connection is not None and sdp.connection.addrtype == "IP6"
    assert sdp.origin.session_version == 3
    for number, (media, track) in enumerate(zip(sdp.media, offered, strict=True), start=1):
        assert media.proto == "RTP/SAVP" and media.direction is Direction.INACTIVE
        (crypto,) = media.crypto
        assert (crypto.tag, crypto.suite) == (number, "AES_CM_128_HMAC_SHA1_32")
        assert crypto.key_params[0].key_salt == track.key_salt and len(track.key_salt) == 30
    assert "key_salt" not in repr(offered[0])  # the key never shows


def test_metadata_names_participants_streams_and_parameters() -> None:
    identity = new_identity("AC" + "0" * 32)
    offered = tracks()
    xml = recording_metadata(identity, offered, {"ticket": "42", "queue": "billing"})
    content_type, body = siprec_body(offer_sdp("127.0.0.1", offered, session_id=1), xml)
    split = split_siprec_body(body, content_type)
    assert split.metadata == xml and split.sdp is not None
    parsed = RecordingMetadata.parse(xml)
    assert parsed.data_mode.value == "complete"
    assert [s.label for s in parsed.streams] == ["inbound", "outbound"]
    assert [p.aor for p in parsed.participants] == ["sip:alice@example.com", "sip:bob@example.com"]
    sends = {a.participant_id: (a.send, a.recv) for a in parsed.participant_stream_assocs}
    first, second = offered
    assert sends[first.participant_id] == ((first.stream_id,), (second.stream_id,))
    assert custom_parameters(parsed.all_extensions()) == {"ticket": "42", "queue": "billing"}
    partial = RecordingMetadata.parse(recording_metadata(identity, offered, {}, partial=True))
    assert partial.data_mode.value == "partial" and partial.participants == ()


def answer_sdp(*m_lines: str) -> bytes:
    head = "v=0\r\no=srs 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    return (head + "".join(m_lines)).encode()


def test_read_answer_takes_the_chosen_law_and_declined_lines() -> None:
    body = answer_sdp("m=audio 20000 RTP/AVP 8\r\na=recvonly\r\n", "m=audio 0 RTP/AVP 0\r\n")
    first, second = read_answer(body, tracks())
    assert (first.codec, first.payload_type, first.port, first.accepted) == ("PCMA", 8, 20000, True)
    assert not second.accepted


@pytest.mark.parametrize(("body", "problem"), [
    (answer_sdp("m=audio 20000 RTP/AVP 0\r\n"), "1 m-lines for 2"),
    (answer_sdp("m=audio 20000 RTP/AVP 18\r\n", "m=audio 20002 RTP/AVP 0\r\n"),
     "no codec we offered"),
])
def test_read_answer_refuses_what_does_not_answer_us(body: bytes, problem: str) -> None:
    with pytest.raises(SdpError, match=problem):
        read_answer(body, tracks())


def test_an_offer_of_other_codecs_carries_their_rtpmap_and_fmtp() -> None:
    sdp = SessionDescription.parse(offer_sdp("127.0.0.1", tracks(), session_id=7,
                                             codecs=("opus", "G722", "AMR", "PCMU")))
    media = sdp.media[0]
    assert media.formats == ("111", "9", "96", "0")
    assert [str(media.rtpmap(pt)) for pt in media.payload_types] == [
        "111 opus/48000/2", "9 G722/8000", "96 AMR/8000", "0 PCMU/8000"]
    text = bytes(sdp).decode()
    assert "a=fmtp:96 octet-align=1\r\n" in text and "a=fmtp:111 minptime=10" in text
    with pytest.raises(UsageError, match="no encoder for 'G729'"):
        offer_sdp("127.0.0.1", tracks(), session_id=7, codecs=("G729",))


def test_read_answer_sends_with_the_answers_numbering() -> None:
    """RFC 3264 §6.1: a dynamic type the answer renumbers is sent with the answer's number;
    a codec is matched by name and clock rate, never by a number alone."""
    body = answer_sdp("m=audio 20000 RTP/AVP 101\r\na=rtpmap:101 OPUS/48000/2\r\n",
                      "m=audio 20002 RTP/AVP 9\r\n")
    first, second = read_answer(body, tracks(), ("opus", "G722"))
    assert (first.codec, first.payload_type) == ("opus", 101)
    assert (second.codec, second.payload_type) == ("G722", 9)
    wrong_rate = answer_sdp("m=audio 20000 RTP/AVP 111\r\na=rtpmap:111 opus/16000\r\n",
                            "m=audio 20002 RTP/AVP 9\r\n")
    with pytest.raises(SdpError, match="no codec we offered"):
        read_answer(wrong_rate, tracks(), ("opus", "G722"))


def test_srtp_answer_must_keep_our_tag() -> None:
    key = "inline:" + "A" * 40
    good = answer_sdp(f"m=audio 20000 RTP/SAVP 0\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 {key}\r\n",
                      f"m=audio 20002 RTP/SAVP 0\r\na=crypto:2 AES_CM_128_HMAC_SHA1_80 {key}\r\n")
    assert [a.srtp for a in read_answer(good, tracks("AES_CM_128_HMAC_SHA1_80"))] == [
        "AES_CM_128_HMAC_SHA1_80"] * 2
    with pytest.raises(SdpError, match="no a=crypto for our tag"):
        read_answer(good.replace(b"crypto:2", b"crypto:7"), tracks("AES_CM_128_HMAC_SHA1_80"))
    with pytest.raises(SdpError, match="not RTP/SAVP"):
        read_answer(good.replace(b"SAVP", b"AVP"), tracks("AES_CM_128_HMAC_SHA1_80"))


@pytest.mark.parametrize(("text", "override", "expected"), [
    ("sip:127.0.0.1", None, ("udp", "127.0.0.1", 5060)),
    ("sip:srs.example.com:5080;transport=tcp", None, ("tcp", "srs.example.com", 5080)),
    ("sip:127.0.0.1;transport=TLS", None, ("tls", "127.0.0.1", 5061)),
    ("sips:[::1]", None, ("tls", "::1", 5061)),
    ("sip:127.0.0.1:7000;transport=tcp", "udp", ("udp", "127.0.0.1", 7000)),
])
def test_target(text: str, override: str | None, expected: tuple[str, str, int]) -> None:
    target = Target.parse(text, override)  # type: ignore[arg-type]
    assert (target.transport, target.host, target.port) == expected


@pytest.mark.parametrize(("text", "problem"), [
    ("http://example.com", "not a sip: or sips: URI"),
    ("sip:127.0.0.1;transport=sctp", "transport must be udp, tcp or tls"),
])
def test_bad_target(text: str, problem: str) -> None:
    with pytest.raises(UsageError, match=problem):
        Target.parse(text)


def test_unknown_suite_names_the_known_ones() -> None:
    with pytest.raises(UsageError, match="AES_CM_128_HMAC_SHA1_80"):
        srtp_suite("F8_128_HMAC_SHA1_80")
