"""srs.sdp.answer: the recorder's answer to each INTEROP offer, asserted line by line."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from srs.errors import SdpError, UsageError
from srs.sdp.answer import DEFAULT_CODECS, AnsweredStream, SupportedCodec, build_answer
from srs.sdp.description import CryptoAttribute, Direction, SessionDescription

DATA = Path(__file__).parents[1] / "data" / "sdp"
# RFC 4568 §4 example answer key.
ANSWER_KEY = CryptoAttribute.parse(
    "1 AES_CM_128_HMAC_SHA1_80 inline:d0RmdmcmVCspeEc3QGZiNWpVLFJhQX1cfHAwJSoj|2^31"
)
HEAD_V4 = ["v=0", "o=srs 4000 7 IN IP4 192.0.2.99", "s=-", "c=IN IP4 192.0.2.99", "t=0 0"]


def load(name: str) -> SessionDescription:
    return SessionDescription.parse((DATA / name).read_bytes())


def answer_lines(
    name: str,
    ports: list[int],
    *,
    address: str = "192.0.2.99",
    crypto: list[CryptoAttribute | None] | None = None,
    codecs: tuple[SupportedCodec, ...] = DEFAULT_CODECS,
) -> tuple[list[str], tuple[AnsweredStream, ...]]:
    answer = build_answer(
        load(name),
        origin_username="srs",
        origin_session_id="4000",
        origin_session_version=7,
        media_address=address,
        local_ports=ports,
        codecs=codecs,
        answer_crypto=crypto,
    )
    body = bytes(answer)
    assert body.endswith(b"\r\n") and b"\n" not in body.replace(b"\r\n", b"")
    return body.decode().split("\r\n")[:-1], answer.streams


def test_one_mline_mixed_takes_the_first_offered_codec_and_keeps_dtmf() -> None:
    # The offer lists PCMA first (m=audio 30000 RTP/AVP 8 0 101 13): the codec the call
    # uses, which the recording client forks; srs records that one, not its own favourite.
    lines, streams = answer_lines("one_mline_mixed.sdp", [50000])
    assert lines == [
        *HEAD_V4,
        "m=audio 50000 RTP/AVP 8 101",
        "a=rtpmap:8 PCMA/8000",
        "a=rtpmap:101 telephone-event/8000",
        "a=fmtp:101 0-16",
        "a=label:1",
        "a=recvonly",
    ]
    assert streams == (
        AnsweredStream(
            index=0,
            label="1",
            port=50000,
            direction=Direction.RECVONLY,
            payload_type=8,
            encoding_name="PCMA",
            clock_rate_hz=8000,
            telephone_event_payload_type=101,
        ),
    )


def test_only_codecs_srs_decodes_are_chosen() -> None:
    lines, streams = answer_lines(
        "one_mline_mixed.sdp", [50000], codecs=(SupportedCodec("pcmu", 8000),)
    )
    assert lines[5:7] == ["m=audio 50000 RTP/AVP 0 101", "a=rtpmap:0 PCMU/8000"]
    assert (streams[0].payload_type, streams[0].encoding_name) == (0, "PCMU")


def test_two_mlines_labels_1_2() -> None:
    lines, streams = answer_lines("two_mlines_labels_1_2.sdp", [50000, 50002])
    media = [
        "a=rtpmap:0 PCMU/8000",
        "a=rtpmap:101 telephone-event/8000",
        "a=fmtp:101 0-16",
    ]
    assert lines == [
        *HEAD_V4,
        "m=audio 50000 RTP/AVP 0 101",
        *media,
        "a=label:1",
        "a=recvonly",
        "m=audio 50002 RTP/AVP 0 101",
        *media,
        "a=label:2",
        "a=recvonly",
    ]
    assert [(s.label, s.port, s.telephone_event_payload_type) for s in streams] == [
        ("1", 50000, 101),
        ("2", 50002, 101),
    ]


@pytest.mark.parametrize(
    ("name", "labels"),
    [
        ("two_mlines_labels_0_1_no_session_c.sdp", ["0", "1"]),
        ("labels_a_leg_b_leg_zero_address.sdp", ["a_leg", "b_leg"]),
    ],
)
def test_static_pcmu_offers(name: str, labels: list[str]) -> None:
    lines, _ = answer_lines(name, [50000, 50002])
    assert lines == [
        *HEAD_V4,
        "m=audio 50000 RTP/AVP 0",
        "a=rtpmap:0 PCMU/8000",
        f"a=label:{labels[0]}",
        "a=recvonly",
        "m=audio 50002 RTP/AVP 0",
        "a=rtpmap:0 PCMU/8000",
        f"a=label:{labels[1]}",
        "a=recvonly",
    ]


def test_three_mlines_one_declined_by_us() -> None:
    lines, streams = answer_lines("three_mlines_mixed_and_legs.sdp", [50000, 0, 50004])
    assert lines == [
        *HEAD_V4,
        "m=audio 50000 RTP/AVP 0",
        "a=rtpmap:0 PCMU/8000",
        "a=label:96",
        "a=recvonly",
        "m=audio 0 RTP/AVP 0",
        "a=label:97",
        "m=audio 50004 RTP/AVP 0",
        "a=rtpmap:0 PCMU/8000",
        "a=label:98",
        "a=recvonly",
    ]
    assert streams[1] == AnsweredStream(
        index=1, label="97", port=0, direction=Direction.INACTIVE, decline_reason="no local port"
    )
    assert not streams[1].accepted and streams[0].accepted


def test_no_labels_no_direction() -> None:
    lines, streams = answer_lines("no_labels_no_direction.sdp", [50000, 50002])
    assert lines == [
        *HEAD_V4,
        "m=audio 50000 RTP/AVP 0 101",
        "a=rtpmap:0 PCMU/8000",
        "a=rtpmap:101 telephone-event/8000",
        "a=recvonly",
        "m=audio 50002 RTP/AVP 8",
        "a=rtpmap:8 PCMA/8000",
        "a=recvonly",
    ]
    assert [s.label for s in streams] == [None, None]


def test_savp_places_our_key_and_keeps_proto() -> None:
    second_key = CryptoAttribute.parse(
        "1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR"
    )
    lines, streams = answer_lines(
        "savp_crypto.sdp", [50000, 50002], crypto=[ANSWER_KEY, second_key]
    )
    media = ["a=rtpmap:0 PCMU/8000", "a=rtpmap:101 telephone-event/8000"]
    assert lines == [
        *HEAD_V4,
        "m=audio 50000 RTP/SAVP 0 101",
        *media,
        "a=label:1",
        "a=recvonly",
        "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:d0RmdmcmVCspeEc3QGZiNWpVLFJhQX1cfHAwJSoj|2^31",
        "m=audio 50002 RTP/SAVP 0 101",
        *media,
        "a=label:2",
        "a=recvonly",
        "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR",
    ]
    assert [s.crypto for s in streams] == [ANSWER_KEY, second_key]


def test_savp_without_our_key_is_declined() -> None:
    lines, streams = answer_lines("savp_crypto.sdp", [50000, 50002], crypto=[ANSWER_KEY, None])
    assert lines[-2:] == ["m=audio 0 RTP/SAVP 0", "a=label:2"]
    assert streams[1].decline_reason == "no acceptable SRTP crypto suite"
    with pytest.raises(SdpError) as caught:
        answer_lines("savp_crypto.sdp", [50000, 50002])
    assert caught.value.status == 488
    assert caught.value.reason == (
        "no acceptable media (m-line 0: no acceptable SRTP crypto suite; "
        "m-line 1: no acceptable SRTP crypto suite)"
    )


def test_codecs_we_cannot_decode_and_video_get_port_zero() -> None:
    lines, streams = answer_lines(
        "codecs_g722_g729_opus_pcma_video.sdp", [50000, 50002, 50004, 50006, 50008]
    )
    assert lines == [
        *HEAD_V4,
        "m=audio 0 RTP/AVP 9",
        "a=label:10",
        "m=audio 0 RTP/AVP 18",
        "a=label:20",
        "m=audio 0 RTP/AVP 111",
        "a=label:30",
        "m=audio 50006 RTP/AVP 8 101",
        "a=rtpmap:8 PCMA/8000",
        "a=rtpmap:101 telephone-event/8000",
        "a=fmtp:101 0-15",
        "a=label:40",
        "a=recvonly",
        "m=video 0 RTP/AVP 96",
        "a=label:50",
    ]
    assert [s.decline_reason for s in streams] == [
        "no codec srs decodes",
        "no codec srs decodes",
        "no codec srs decodes",
        None,
        "video is not recorded",
    ]


def test_g722_accepted_when_we_decode_it() -> None:
    lines, streams = answer_lines(
        "codecs_g722_g729_opus_pcma_video.sdp",
        [50000, 50002, 50004, 50006, 50008],
        codecs=(SupportedCodec("G722", 8000), *DEFAULT_CODECS),
    )
    assert lines[5:11] == [
        "m=audio 50000 RTP/AVP 9 101",
        "a=rtpmap:9 G722/8000",
        "a=rtpmap:101 telephone-event/8000",
        "a=label:10",
        "a=recvonly",
        "m=audio 0 RTP/AVP 18",
    ]
    # The 48 kHz telephone-event does not go with an 8 kHz codec.
    assert streams[3].payload_type == 9 and streams[3].telephone_event_payload_type == 101


def test_ipv6_hold_and_directions() -> None:
    lines, streams = answer_lines(
        "ipv6_hold_directions.sdp", [50000, 50002, 50004], address="2001:DB8:0::1"
    )
    assert lines == [
        "v=0",
        "o=srs 4000 7 IN IP6 2001:db8::1",
        "s=-",
        "c=IN IP6 2001:db8::1",
        "t=0 0",
        "m=audio 50000 RTP/AVP 0",
        "a=rtpmap:0 PCMU/8000",
        "a=label:1",
        "a=inactive",
        "m=audio 50002 RTP/AVP 0",
        "a=rtpmap:0 PCMU/8000",
        "a=label:2",
        "a=inactive",
        "m=audio 50004 RTP/AVP 0",
        "a=rtpmap:0 PCMU/8000",
        "a=label:3",
        "a=recvonly",
        "a=rtcp-mux",
    ]
    assert [(s.direction, s.rtcp_mux) for s in streams] == [
        (Direction.INACTIVE, False),
        (Direction.INACTIVE, False),
        (Direction.RECVONLY, True),
    ]


def test_nothing_acceptable_is_488() -> None:
    with pytest.raises(SdpError) as caught:
        answer_lines("nothing_acceptable.sdp", [50000, 50002])
    assert caught.value.status == 488
    assert caught.value.reason == (
        "no acceptable media (m-line 0: no codec srs decodes; m-line 1: video is not recorded)"
    )


def test_disabled_and_unsupported_transport() -> None:
    offer = SessionDescription.parse(
        b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n"
        b"m=audio 0 RTP/AVP 0\r\nm=audio 9 UDP/TLS/RTP/SAVP 0\r\nm=audio 5 RTP/AVPF 0\r\n"
        b"m=audio 0 RTP/AVP\r\n"
    )
    answer = build_answer(
        offer,
        origin_username="srs",
        origin_session_id="1",
        origin_session_version=0,
        media_address="192.0.2.99",
        local_ports=[50000, 50002, 50004, 50006],
    )
    assert [s.decline_reason for s in answer.streams] == [
        "disabled in the offer",
        "unsupported transport UDP/TLS/RTP/SAVP",
        None,
        "disabled in the offer",
    ]
    assert [bytes(m).split(b"\r\n")[0] for m in answer.description.media] == [
        b"m=audio 0 RTP/AVP 0",
        b"m=audio 0 UDP/TLS/RTP/SAVP 0",
        b"m=audio 50004 RTP/AVPF 0",
        b"m=audio 0 RTP/AVP 0",
    ]
    # The answer description reads back like a received one.
    assert answer.description.media[2].direction is Direction.RECVONLY
    assert answer.description.media[2].label is None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"local_ports": [1]}, "1 local ports for 2 m-lines"),
        ({"local_ports": [1, 70000]}, "local port out of range"),
        ({"answer_crypto": [None]}, "1 answer keys for 2 m-lines"),
        (
            {"media_address": "srs.example.com"},
            "media address is not an IP address: 'srs.example.com'",
        ),
        (
            {"origin_session_version": -1},
            "origin session id and version must be non-negative integers",
        ),
        (
            {"origin_session_id": "abc"},
            "origin session id and version must be non-negative integers",
        ),
        ({"answer_crypto": [ANSWER_KEY, None]}, "answer a=crypto given for an RTP/AVP m-line"),
    ],
)
def test_misuse_is_usage_error(kwargs: dict[str, object], message: str) -> None:
    arguments: dict[str, object] = {
        "origin_username": "srs",
        "origin_session_id": "1",
        "origin_session_version": 0,
        "media_address": "192.0.2.99",
        "local_ports": [50000, 50002],
        **kwargs,
    }
    with pytest.raises(UsageError, match=message.replace("(", r"\(").replace(")", r"\)")):
        build_answer(load("two_mlines_labels_1_2.sdp"), **arguments)  # type: ignore[arg-type]


def test_answer_key_must_match_an_offered_tag_and_suite() -> None:
    other_suite = CryptoAttribute.parse(
        "1 AES_CM_128_HMAC_SHA1_32 inline:d0RmdmcmVCspeEc3QGZiNWpVLFJhQX1cfHAwJSoj"
    )
    with pytest.raises(UsageError, match="does not match an offered tag and suite"):
        answer_lines("savp_crypto.sdp", [50000, 50002], crypto=[other_suite, None])


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["audio", "video"]),
            st.integers(0, 65535),
            st.sampled_from(["RTP/AVP", "RTP/SAVP", "RTP/AVPF", "TCP/MSRP"]),
            st.lists(st.sampled_from(["0", "8", "9", "18", "101", "111"]), min_size=1, unique=True),
            st.sampled_from(["sendonly", "recvonly", "sendrecv", "inactive", ""]),
        ),
        min_size=1,
        max_size=4,
    ),
    st.lists(st.integers(0, 65535), min_size=4, max_size=4),
)
def test_answer_shape_property(
    media: list[tuple[str, int, str, list[str], str]], ports: list[int]
) -> None:
    lines = ["v=0", "o=- 1 1 IN IP4 192.0.2.1", "s=-", "c=IN IP4 192.0.2.1", "t=0 0"]
    for kind, port, proto, formats, direction in media:
        lines.append(f"m={kind} {port} {proto} {' '.join(formats)}")
        lines.append("a=rtpmap:101 telephone-event/8000")
        if direction:
            lines.append(f"a={direction}")
    offer = SessionDescription.parse("\r\n".join(lines).encode() + b"\r\n")
    try:
        answer = build_answer(
            offer,
            origin_username="srs",
            origin_session_id="9",
            origin_session_version=3,
            media_address="192.0.2.99",
            local_ports=ports[: len(media)],
        )
    except SdpError as error:
        assert error.status == 488
        return
    assert len(answer.description.media) == len(offer.media)
    lines = zip(offer.media, answer.description.media, answer.streams, strict=True)
    for offered, answered, stream in lines:
        assert answered.media == offered.media and answered.proto == offered.proto
        assert answered.port == stream.port
        if stream.accepted:
            assert answered.direction in (Direction.RECVONLY, Direction.INACTIVE)
            assert answered.payload_types[0] == stream.payload_type
            assert stream.encoding_name in ("PCMU", "PCMA")
        else:
            assert answered.port == 0 and stream.payload_type is None
