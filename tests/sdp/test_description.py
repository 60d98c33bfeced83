"""srs.sdp.description and srs.sdp.crypto: SDP offers parsed into typed values."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from srs.errors import SdpError
from srs.sdp.description import (
    MAX_SDP_BYTES,
    Attribute,
    Connection,
    CryptoAttribute,
    CryptoKeyParam,
    Direction,
    Fmtp,
    Origin,
    RtpMap,
    SessionDescription,
)

DATA = Path(__file__).parents[1] / "data" / "sdp"
# RFC 4568 §4 example keys.
KEY_1 = "PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR"
KEY_1_HEX = "3d2d6e40255e7821426a75667239293f2c2335685c603d265d7b71695051"
KEY_ANSWER = "d0RmdmcmVCspeEc3QGZiNWpVLFJhQX1cfHAwJSoj"


def load(name: str) -> SessionDescription:
    return SessionDescription.parse((DATA / name).read_bytes())


def sdp(*lines: str) -> bytes:
    return "".join(line + "\r\n" for line in lines).encode()


HEAD = ("v=0", "o=- 1 2 IN IP4 192.0.2.1", "s=-", "t=0 0")


class TestFixtures:
    def test_one_mline_mixed(self) -> None:
        offer = load("one_mline_mixed.sdp")
        assert offer.origin == Origin(
            "FreeSWITCH", "1700000000", 1700000001, "IN", "IP4", "192.0.2.10"
        )
        assert offer.session_name == "FreeSWITCH"
        assert offer.connection == Connection("IN", "IP4", "192.0.2.10")
        assert offer.times == ("0 0",)
        (media,) = offer.media
        assert (media.media, media.port, media.port_count) == ("audio", 30000, None)
        assert media.proto == "RTP/AVP"
        assert media.formats == ("8", "0", "101", "13")
        assert media.payload_types == (8, 0, 101, 13)
        assert media.rtpmaps == (
            RtpMap(8, "PCMA", 8000),
            RtpMap(0, "PCMU", 8000),
            RtpMap(101, "telephone-event", 8000),
            RtpMap(13, "CN", 8000),  # static default: no a=rtpmap for 13
        )
        assert media.fmtps == (Fmtp(101, "0-16"),)
        assert media.fmtp(101) == Fmtp(101, "0-16")
        assert media.fmtp(0) is None
        assert media.rtpmap(13) == RtpMap(13, "CN", 8000)
        assert media.rtpmap(96) is None
        assert media.ptime_ms == 20
        assert media.label == "1"
        assert media.direction is Direction.SENDONLY
        assert media.connection is None
        assert offer.connection_for(media) == Connection("IN", "IP4", "192.0.2.10")
        assert media.crypto == ()
        assert not media.rtcp_mux and media.is_rtp and not media.is_secure

    def test_two_mlines_labels_1_2(self) -> None:
        offer = load("two_mlines_labels_1_2.sdp")
        assert [m.label for m in offer.media] == ["1", "2"]
        assert [m.port for m in offer.media] == [12000, 12002]
        assert [m.direction for m in offer.media] == [Direction.SENDONLY] * 2

    def test_no_session_connection_lf_only(self) -> None:
        offer = load("two_mlines_labels_0_1_no_session_c.sdp")
        assert offer.connection is None
        assert [m.label for m in offer.media] == ["0", "1"]
        assert [offer.connection_for(m) for m in offer.media] == [
            Connection("IN", "IP4", "203.0.113.5"),
            Connection("IN", "IP4", "203.0.113.6"),
        ]
        # Static payload types without a=rtpmap.
        assert offer.media[0].rtpmaps == (RtpMap(0, "PCMU", 8000), RtpMap(8, "PCMA", 8000))

    def test_zero_address(self) -> None:
        offer = load("labels_a_leg_b_leg_zero_address.sdp")
        assert offer.connection is not None and offer.connection.is_unspecified
        assert offer.origin.unicast_address == "0.0.0.0"
        assert [m.label for m in offer.media] == ["a_leg", "b_leg"]

    def test_missing_labels_and_direction(self) -> None:
        offer = load("no_labels_no_direction.sdp")
        assert [m.label for m in offer.media] == [None, None]
        # RFC 4566 §6: no direction attribute means sendrecv.
        assert [m.direction for m in offer.media] == [Direction.SENDRECV] * 2

    def test_three_mlines(self) -> None:
        offer = load("three_mlines_mixed_and_legs.sdp")
        assert [m.label for m in offer.media] == ["96", "97", "98"]

    def test_savp_crypto(self) -> None:
        offer = load("savp_crypto.sdp")
        first, second = offer.media
        assert first.proto == "RTP/SAVP" and first.is_secure
        assert first.crypto == (
            CryptoAttribute(
                1,
                "AES_CM_128_HMAC_SHA1_80",
                (CryptoKeyParam(bytes.fromhex(KEY_1_HEX), lifetime_packets=2**31),),
            ),
            CryptoAttribute(
                2,
                "AES_CM_128_HMAC_SHA1_32",
                (
                    CryptoKeyParam(
                        b"a698b3514c9c6a7d6d2d97480de70e", 2**31, mki=1, mki_length_bytes=1
                    ),
                ),
            ),
        )
        assert second.crypto[0].key_params[0].lifetime_packets is None
        assert second.crypto[0].key_salt_bytes == 30

    def test_directions_inherited_and_ipv6(self) -> None:
        offer = load("ipv6_hold_directions.sdp")
        assert offer.connection == Connection("IN", "IP6", "2001:db8::10")
        assert offer.attributes == (Attribute("inactive"),)
        assert [m.direction for m in offer.media] == [
            Direction.INACTIVE,  # session-level a=inactive (RFC 4566 §6)
            Direction.RECVONLY,
            Direction.SENDRECV,
        ]
        assert [m.rtcp_mux for m in offer.media] == [False, False, True]

    def test_codecs(self) -> None:
        offer = load("codecs_g722_g729_opus_pcma_video.sdp")
        g722, g729, opus, pcma, video = offer.media
        # RFC 3551 §4.5.2: G.722 says 8000 in SDP though it samples at 16 kHz.
        assert g722.rtpmap(9) == RtpMap(9, "G722", 8000)
        assert g729.rtpmap(18) == RtpMap(18, "G729", 8000)
        assert g729.fmtp(18) == Fmtp(18, "annexb=no")
        assert opus.rtpmap(111) == RtpMap(111, "opus", 48000, 2)
        assert opus.rtpmap(101) == RtpMap(101, "telephone-event", 48000)
        assert pcma.rtpmaps == (
            RtpMap(9, "G722", 8000),
            RtpMap(8, "PCMA", 8000),
            RtpMap(101, "telephone-event", 8000),
        )
        assert video.media == "video" and video.rtpmap(96) == RtpMap(96, "H264", 90000)

    @pytest.mark.parametrize("path", sorted(DATA.glob("*.sdp")), ids=lambda p: p.name)
    def test_round_trip(self, path: Path) -> None:
        offer = SessionDescription.parse(path.read_bytes())
        assert SessionDescription.parse(bytes(offer)) == offer
        if b"\r\n" in path.read_bytes():
            assert bytes(offer) == path.read_bytes()


class TestParse:
    def test_other_lines_bandwidth_and_port_count(self) -> None:
        data = sdp(
            "v=0",
            "o=alice 2890844526 2890844526 IN IP4 host.atlanta.example.com",
            "s=Session",
            "i=A session",
            "u=http://www.example.com/seminars/sdp.pdf",
            "e=j.doe@example.com (Jane Doe)",
            "c=IN IP4 224.2.17.12/127",
            "b=AS:64",
            "t=2873397496 2873404696",
            "r=604800 3600 0 90000",
            "a=tool:x",
            "m=audio 49170/2 RTP/AVP 0",
            "i=audio",
            "b=TIAS:64000",
            "k=prompt",
            "a=ptime:20.0",
            "m=application 9 UDP/BFCP *",
            "a=floorctrl:s-only",
        )
        offer = SessionDescription.parse(data)
        assert offer.other_lines == (
            "i=A session",
            "u=http://www.example.com/seminars/sdp.pdf",
            "e=j.doe@example.com (Jane Doe)",
            "r=604800 3600 0 90000",
        )
        assert offer.connection is not None and offer.connection.host == "224.2.17.12"
        assert not offer.connection.is_unspecified
        assert offer.bandwidths == ("AS:64",)
        assert offer.attributes == (Attribute("tool", "x"),)
        audio, bfcp = offer.media
        assert (audio.port, audio.port_count, audio.ptime_ms) == (49170, 2, 20)
        assert audio.bandwidths == ("TIAS:64000",)
        assert bfcp.formats == ("*",) and bfcp.payload_types == () and not bfcp.is_rtp
        assert bfcp.attributes == (Attribute("floorctrl", "s-only"),)
        assert SessionDescription.parse(bytes(offer)) == offer

    def test_explicit_rtpmap_overrides_static_and_first_wins(self) -> None:
        data = sdp(*HEAD, "m=audio 1 RTP/AVP 0", "a=rtpmap:0 pcmu/8000/1", "a=rtpmap:0 PCMA/8000")
        assert SessionDescription.parse(data).media[0].rtpmaps == (RtpMap(0, "pcmu", 8000, 1),)

    def test_tolerances(self) -> None:
        data = b"v=0\no=- 1 2 IN IP4 192.0.2.1  \n\ns=-\nt=0 0\nm=audio 0 RTP/AVP\na=sendonly \n\n"
        offer = SessionDescription.parse(data)
        assert offer.media[0].formats == () and offer.media[0].direction is Direction.SENDONLY

    def test_missing_s_line_defaults(self) -> None:
        data = sdp("v=0", "o=- 1 2 IN IP4 192.0.2.1", "m=audio 5 RTP/AVP 0")
        offer = SessionDescription.parse(data)
        assert offer.session_name == "-" and offer.times == ()

    def test_last_direction_wins(self) -> None:
        data = sdp(*HEAD, "m=audio 1 RTP/AVP 0", "a=sendrecv", "a=sendonly")
        assert SessionDescription.parse(data).media[0].direction is Direction.SENDONLY

    @pytest.mark.parametrize(
        ("lines", "reason"),
        [
            ((), "SDP does not start with v="),
            (("o=- 1 2 IN IP4 h",), "SDP does not start with v="),
            (("v=1", "o=- 1 2 IN IP4 h"), "unsupported SDP version line 'v=1'"),
            (("v=0", "s=-"), "SDP has no o= line"),
            (("v=0", "v=0", "o=- 1 2 IN IP4 h"), "SDP has a second v= line"),
            (("v=0", "o=- 1 2 IN IP4 h", "x=1"), "SDP line 3 is not <type>=<value>: 'x=1'"),
            (("v=0", "o=- 1 2 IN IP4 h", "junk"), "SDP line 3 is not <type>=<value>: 'junk'"),
            (("v=0", "o=- 1 2 IN IP4 h", "m=audio 1 RTP/AVP 0", "s=-"),
             "SDP line not allowed in a media section: 's=-'"),
            (("v=0", "o=- 1 2 IN IP4"), "o= needs 6 fields in 'o=- 1 2 IN IP4'"),
            (("v=0", "o=- x 2 IN IP4 h"),
             "o= session id and version must be numeric in 'o=- x 2 IN IP4 h'"),
            ((*HEAD, "c=IN IP4"), "c= needs 3 fields in 'c=IN IP4'"),
            ((*HEAD, "c=ATM NSAP x"),
             "c= with unsupported network or address type in 'c=ATM NSAP x'"),
            ((*HEAD, "a=bad name"), "bad attribute name in 'a=bad name'"),
            ((*HEAD, "m=audio 1"), "m= needs media, port and proto: 'm=audio 1'"),
            ((*HEAD, "m=audio x RTP/AVP 0"), "bad port in 'm=audio x RTP/AVP 0'"),
            ((*HEAD, "m=audio 65536 RTP/AVP 0"), "bad port in 'm=audio 65536 RTP/AVP 0'"),
            ((*HEAD, "m=audio 1/0 RTP/AVP 0"), "bad port count in 'm=audio 1/0 RTP/AVP 0'"),
            ((*HEAD, "m=audio 1 RTP/AVP"), "m= without formats: 'm=audio 1 RTP/AVP'"),
            (
                (*HEAD, "m=audio 1 RTP/AVP 128"),
                "bad payload type '128' in m= in 'm=audio 1 RTP/AVP 128'",
            ),
            ((*HEAD, "m=audio 1 RTP/AVP 0 0"), "repeated payload type in 'm=audio 1 RTP/AVP 0 0'"),
            (
                (*HEAD, "m=audio 1 RTP/AVP " + " ".join(["0"] * 129)),
                "more than 128 formats in an m= line",
            ),
            (
                (*HEAD, "m=audio 1 RTP/AVP 0", "c=IN IP4"),
                "c= needs 3 fields in 'c=IN IP4'",
            ),
            ((*HEAD, "m=audio 1 RTP/AVP 0", "a=ptime:x"), "bad a=ptime in 'a=ptime:x'"),
        ],
    )
    def test_invalid(self, lines: tuple[str, ...], reason: str) -> None:
        with pytest.raises(SdpError) as caught:
            SessionDescription.parse(sdp(*lines))
        assert caught.value.reason == reason[:120]
        assert caught.value.status == 488

    @pytest.mark.parametrize(
        "line",
        [
            "a=rtpmap:0 PCMU",
            "a=rtpmap:0 PCMU/x",
            "a=rtpmap:0 PCMU/0",
            "a=rtpmap:x PCMU/8000",
            "a=fmtp:300 x",
            "a=crypto:1 AES_CM_128_HMAC_SHA1_80",
        ],
    )
    def test_malformed_rtpmap_fmtp_crypto_lines_are_skipped(self, line: str) -> None:
        # Old gateways send lines like "a=rtpmap:31 LPC" (RFC 4475 §3.4): the offer stays
        # usable, the line stays raw, and static payload types keep their RFC 3551 meaning.
        offer = SessionDescription.parse(sdp(*HEAD, "m=audio 1 RTP/AVP 0", line))
        media = offer.media[0]
        assert [(a.name, a.value) for a in media.attributes] == [tuple(line[2:].split(":", 1))]
        rtpmap = media.rtpmap(0)
        assert rtpmap is not None and (rtpmap.encoding_name, rtpmap.clock_rate_hz) == ("PCMU", 8000)
        assert media.fmtps == () and media.crypto == ()

    def test_limits(self) -> None:
        with pytest.raises(SdpError, match=f"SDP over {MAX_SDP_BYTES} bytes"):
            SessionDescription.parse(b"v=0\r\n" + b"a=x\r\n" * 4000)
        with pytest.raises(SdpError, match="SDP over 512 lines"):
            SessionDescription.parse(b"v=0\n" + b"\n" * 600)
        with pytest.raises(SdpError, match="SDP line 2 too long"):
            SessionDescription.parse(b"v=0\r\na=" + b"x" * 4100)
        with pytest.raises(SdpError, match="more than 16 m= lines"):
            SessionDescription.parse(sdp(*HEAD, *["m=audio 1 RTP/AVP 0"] * 17))
        with pytest.raises(SdpError, match="SDP is not UTF-8"):
            SessionDescription.parse(b"v=0\r\ns=\xff\r\n")
        with pytest.raises(SdpError, match="SDP line 2 has a CR or NUL"):
            SessionDescription.parse(b"v=0\r\ns=a\rb\r\n")

    @settings(max_examples=300, deadline=None)
    @given(st.binary(max_size=400))
    def test_any_bytes_give_description_or_sdp_error(self, data: bytes) -> None:
        with contextlib.suppress(SdpError):
            SessionDescription.parse(b"v=0\r\no=- 1 1 IN IP4 h\r\n" + data)

    @settings(max_examples=300, deadline=None)
    @given(
        st.lists(
            st.sampled_from(
                [
                    "m=audio 1000 RTP/AVP 0 8 101",
                    "m=audio 0 RTP/SAVP 0",
                    "m=video 9 RTP/AVP 96",
                    "c=IN IP4 192.0.2.9",
                    "a=rtpmap:101 telephone-event/8000",
                    "a=rtpmap:96 VP8/90000",
                    "a=fmtp:101 0-16",
                    "a=label:x",
                    "a=sendonly",
                    "a=inactive",
                    "a=rtcp-mux",
                    "a=ptime:30",
                    f"a=crypto:7 AES_CM_128_HMAC_SHA1_32 inline:{KEY_1}|2^20|1:4",
                    "b=AS:80",
                    "a=x-custom:1 2 3",
                ]
            ),
            max_size=20,
        )
    )
    def test_round_trip_property(self, lines: list[str]) -> None:
        try:
            offer = SessionDescription.parse(sdp(*HEAD, *lines))
        except SdpError:
            return  # e.g. a media-level line before any m=
        assert SessionDescription.parse(bytes(offer)) == offer


class TestCrypto:
    def test_parse_and_wire_form(self) -> None:
        value = (
            f"1 AES_CM_128_HMAC_SHA1_80 inline:{KEY_1}|2^20|1:4;"
            f"inline:{KEY_ANSWER}|1048575 KDR=1 UNENCRYPTED_SRTP"
        )
        crypto = CryptoAttribute.parse(value)
        assert crypto.tag == 1 and crypto.suite == "AES_CM_128_HMAC_SHA1_80"
        assert [(k.lifetime_packets, k.mki, k.mki_length_bytes) for k in crypto.key_params] == [
            (2**20, 1, 4),
            (1048575, None, None),
        ]
        assert crypto.session_params == ("KDR=1", "UNENCRYPTED_SRTP")
        assert bytes(crypto).decode() == value
        assert CryptoAttribute.parse(bytes(crypto).decode()) == crypto

    def test_repr_and_str_never_show_keys(self) -> None:
        crypto = CryptoAttribute.parse(f"1 AES_CM_128_HMAC_SHA1_80 inline:{KEY_1}")
        key = crypto.key_params[0].key_salt
        data = sdp(*HEAD, "m=audio 1 RTP/SAVP 0", f"a=crypto:{bytes(crypto).decode()}")
        offer = SessionDescription.parse(data)
        shown = (
            repr(crypto),
            str(crypto),
            repr(crypto.key_params[0]),
            str(crypto.key_params[0]),
            repr(offer),
            str(offer.media[0].attributes[0]),
        )
        for text in shown:
            assert KEY_1 not in text and str(key) not in text and key.hex() not in text
        assert repr(crypto) == (
            "CryptoAttribute(tag=1, suite='AES_CM_128_HMAC_SHA1_80', "
            "key_params=<1 redacted>, session_params=<0 redacted>)"
        )
        assert repr(offer.media[0].attributes[0]) == "Attribute(name='crypto', value='<redacted>')"

    def test_unpadded_base64_and_unknown_suite(self) -> None:
        # AES_256: 46 bytes = 62 base64 characters without padding.
        key = "A" * 62
        crypto = CryptoAttribute.parse(f"3 AES_256_CM_HMAC_SHA1_80 inline:{key}")
        assert len(crypto.key_params[0].key_salt) == 46
        unknown = CryptoAttribute.parse("4 SOME_FUTURE_SUITE inline:AAAA")
        assert unknown.key_salt_bytes is None and unknown.key_params[0].key_salt == b"\0\0\0"

    def test_lifetime_round_trip_forms(self) -> None:
        assert bytes(CryptoKeyParam(b"\1" * 30, lifetime_packets=1024)).endswith(b"|2^10")
        assert bytes(CryptoKeyParam(b"\1" * 30, lifetime_packets=1000)).endswith(b"|1000")
        assert bytes(CryptoKeyParam(b"\1" * 30, lifetime_packets=1)).endswith(b"|1")

    @pytest.mark.parametrize(
        ("value", "reason"),
        [
            ("1 AES_CM_128_HMAC_SHA1_80", "a=crypto needs a tag, a suite and key parameters"),
            (
                f"1234567890 AES_CM_128_HMAC_SHA1_80 inline:{KEY_1}",
                "a=crypto tag is not 1-9 digits",
            ),
            (f"1 AES(CM) inline:{KEY_1}", "a=crypto suite is malformed"),
            (
                f"1 AES_CM_128_HMAC_SHA1_80 {';'.join(['inline:' + KEY_1] * 17)}",
                "a=crypto has too many keys",
            ),
            (f"1 AES_CM_128_HMAC_SHA1_80 uri:{KEY_1}", "a=crypto key method is not inline"),
            ("1 AES_CM_128_HMAC_SHA1_80 inline:***", "a=crypto has a malformed inline key"),
            (
                f"1 AES_CM_128_HMAC_SHA1_80 inline:{KEY_1}|1|2|3",
                "a=crypto has a malformed inline key",
            ),
            ("1 AES_CM_128_HMAC_SHA1_80 inline:A", "a=crypto inline key is not base64"),
            (
                "1 AES_CM_128_HMAC_SHA1_80 inline:AAAA",
                "a=crypto key for AES_CM_128_HMAC_SHA1_80 is not 30 bytes",
            ),
            (f"1 AES_CM_128_HMAC_SHA1_80 inline:{KEY_1}|1:0", "a=crypto MKI length out of range"),
            (f"1 AES_CM_128_HMAC_SHA1_80 inline:{KEY_1}|1:129", "a=crypto MKI length out of range"),
            (
                f"1 AES_CM_128_HMAC_SHA1_80 inline:{KEY_1}|2^65",
                "a=crypto key lifetime out of range",
            ),
            (
                f"1 AES_CM_128_HMAC_SHA1_80 inline:{KEY_1}|1:4|2^20",
                "a=crypto has a malformed key lifetime or MKI",
            ),
            (
                f"1 AES_CM_128_HMAC_SHA1_80 inline:{KEY_1}|x",
                "a=crypto has a malformed key lifetime or MKI",
            ),
        ],
    )
    def test_invalid(self, value: str, reason: str) -> None:
        with pytest.raises(SdpError) as caught:
            CryptoAttribute.parse(value)
        assert caught.value.reason == reason


def test_fec_key_session_parameter_never_shows_in_repr() -> None:
    from srs.sdp.crypto import CryptoAttribute

    key = "WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz"
    fec = "PS1uQCVeeCFCR0xGMDs1WVZOUGRUZWRBX0x4Wnll"
    attribute = CryptoAttribute.parse(
        f"1 AES_CM_128_HMAC_SHA1_80 inline:{key} FEC_KEY=inline:{fec}")
    for text in (repr(attribute), str(attribute)):
        assert key not in text and fec not in text
    assert fec in bytes(attribute).decode()  # the wire form keeps it
