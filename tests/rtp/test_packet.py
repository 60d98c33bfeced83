"""RtpPacket / RtcpCompound: golden packets, one invalid sibling per error, round trips."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from srs.errors import RtpError, UsageError
from srs.rtp.packet import RtcpCompound, RtcpPacket, RtpPacket, is_rtcp

# V=2, no flags, PT 0, seq 1000, ts 50000, SSRC 0x12345678, payload "abc".
PLAIN = bytes.fromhex("800003e8 0000c350 12345678") + b"abc"
# V=2 P X CC=2, M, PT 8, seq 65535, ts 2**32-1, SSRC 0xdeadbeef, CSRCs 1 and 2,
# RFC 8285 one-byte extension (profile 0xBEDE, 1 word), 4 payload octets, 3 padding octets.
FULL = bytes.fromhex(
    "b288ffff ffffffff deadbeef 00000001 00000002 bede0001 10aa0000 d5d5d5d5 000003"
)


def test_plain_packet_fields() -> None:
    packet = RtpPacket.parse(PLAIN)
    assert packet == RtpPacket(0, 1000, 50000, 0x12345678, b"abc")
    flags = (packet.version, packet.padding, packet.extension, packet.marker)
    assert flags == (2, False, False, False)
    assert bytes(packet) == PLAIN


def test_full_packet_fields() -> None:
    packet = RtpPacket.parse(FULL)
    assert packet.payload_type == 8
    assert packet.marker is True
    assert packet.sequence_number == 65535
    assert packet.timestamp == 0xFFFF_FFFF
    assert packet.ssrc == 0xDEADBEEF
    assert packet.csrcs == (1, 2)
    assert packet.extension_profile == 0xBEDE
    assert packet.extension_data == bytes.fromhex("10aa0000")
    assert packet.payload == bytes.fromhex("d5d5d5d5")
    assert packet.padding_bytes == 3
    assert (packet.padding, packet.extension) == (True, True)
    assert bytes(packet) == FULL


def test_parse_accepts_memoryview_and_bytearray() -> None:
    expected = RtpPacket.parse(FULL)
    assert RtpPacket.parse(memoryview(FULL)) == RtpPacket.parse(bytearray(FULL)) == expected


def test_padding_may_fill_the_whole_payload() -> None:
    data = bytes.fromhex("a0000001 00000002 00000003 00000004")
    packet = RtpPacket.parse(data)
    assert (packet.payload, packet.padding_bytes) == (b"", 4)


def test_empty_extension_is_kept() -> None:
    data = bytes.fromhex("90000001 00000002 00000003 10000000") + b"x"
    packet = RtpPacket.parse(data)
    assert (packet.extension_profile, packet.extension_data, packet.payload) == (0x1000, b"", b"x")


HEADER = "000001 00000002 00000003 "  # the fixed header after its first octet


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        pytest.param(PLAIN[:11], "truncated", id="under-12-bytes"),
        pytest.param(b"", "truncated", id="empty"),
        pytest.param(bytes.fromhex("82" + HEADER + "00000004"), "truncated", id="csrc-past-end"),
        pytest.param(bytes.fromhex("90" + HEADER + "bede"), "truncated", id="ext-header-past-end"),
        pytest.param(bytes.fromhex("40" + HEADER), "version", id="version-1"),
        pytest.param(bytes.fromhex("00" + HEADER), "version", id="version-0"),
        pytest.param(bytes.fromhex("c0" + HEADER), "version", id="version-3"),
        pytest.param(bytes.fromhex("a0" + HEADER + "aabb00"), "padding", id="padding-zero"),
        pytest.param(bytes.fromhex("a0" + HEADER + "aabb04"), "padding", id="padding-too-big"),
        pytest.param(
            bytes.fromhex("90" + HEADER + "bede0002 00000000"), "extension", id="ext-length"
        ),
    ],
)
def test_parse_errors(data: bytes, reason: str) -> None:
    with pytest.raises(RtpError) as caught:
        RtpPacket.parse(data)
    assert caught.value.drop_reason == reason
    assert caught.value.status == 0


def test_padding_counts_only_what_follows_the_extension() -> None:
    # 4 octets after a 1-word extension; a padding count of 5 reaches into the extension.
    data = bytes.fromhex("b0000001 00000002 00000003 bede0001 11223344 aabbcc05")
    with pytest.raises(RtpError) as caught:
        RtpPacket.parse(data)
    assert caught.value.drop_reason == "padding"
    assert RtpPacket.parse(data[:-1] + b"\x04").payload == b""


def test_serialise_pads_extension_to_words() -> None:
    packet = RtpPacket(96, 1, 2, 3, b"p", extension_profile=0xBEDE, extension_data=b"\x10\x01")
    assert bytes(packet) == bytes.fromhex("90600001 00000002 00000003 bede0001 10010000") + b"p"


@pytest.mark.parametrize(
    "packet",
    [
        RtpPacket(128, 1, 2, 3, b""),
        RtpPacket(0, 1, 2, 3, b"", padding_bytes=256),
        RtpPacket(0, 1, 2, 3, b"", csrcs=tuple(range(16))),
    ],
)
def test_serialise_refuses_out_of_range_fields(packet: RtpPacket) -> None:
    with pytest.raises(UsageError):
        bytes(packet)


@pytest.mark.parametrize(
    ("second_octet", "expected"),
    [
        (200, True),
        (201, True),
        (192, True),
        (223, True),
        (191, False),
        (224, False),
        (0x80, False),
        (0x00, False),
    ],
)
def test_is_rtcp_by_second_octet(second_octet: int, expected: bool) -> None:
    assert is_rtcp(bytes([0x80, second_octet, 0, 1, 0, 0, 0, 0])) is expected


def test_is_rtcp_needs_version_2_and_four_octets() -> None:
    assert is_rtcp(bytes([0x40, 200, 0, 1])) is False
    assert is_rtcp(bytes([0x80, 200, 0])) is False


# SR (6 words: SSRC + 20 octets sender info) then SDES (SSRC 0x11223344, CNAME "ab").
SR_SDES = bytes.fromhex(
    "80c80006 11223344 e1234567 89abcdef 0000c350 00000010 00000a00"
    "81ca0003 11223344 01026162 00000000"
)


def test_rtcp_compound_golden() -> None:
    compound = RtcpCompound.parse(SR_SDES)
    assert [p.packet_type for p in compound.packets] == [200, 202]
    assert [p.count for p in compound.packets] == [0, 1]
    assert compound.sender_ssrc == 0x11223344
    assert (compound.sender_reports, compound.receiver_reports) == (1, 0)
    assert compound.packets[0].body == bytes.fromhex("e1234567 89abcdef 0000c350 00000010 00000a00")
    assert bytes(compound) == SR_SDES
    assert is_rtcp(SR_SDES)


def test_rtcp_empty_receiver_report() -> None:
    compound = RtcpCompound.parse(bytes.fromhex("80c90001 cafebabe"))
    assert compound.packets == (RtcpPacket(201, 0, 0xCAFEBABE),)
    assert (compound.sender_ssrc, compound.receiver_reports) == (0xCAFEBABE, 1)


def test_rtcp_without_report_has_no_sender() -> None:
    compound = RtcpCompound.parse(bytes.fromhex("81cb0000"))  # BYE with no SSRC
    assert compound.packets == (RtcpPacket(203, 1, None),)
    assert compound.sender_ssrc is None


@pytest.mark.parametrize(
    ("data", "detail"),
    [
        pytest.param(bytes.fromhex("80c8"), "truncated", id="short"),
        pytest.param(bytes.fromhex("80c90001 cafebabe 81"), "truncated", id="tail"),
        pytest.param(bytes.fromhex("40c90001 cafebabe"), "version", id="version"),
        pytest.param(bytes.fromhex("80c90002 cafebabe"), "length past the end", id="length"),
        pytest.param(bytes.fromhex("81cb0000") * 33, "too many packets", id="too-many"),
    ],
)
def test_rtcp_errors(data: bytes, detail: str) -> None:
    with pytest.raises(RtpError) as caught:
        RtcpCompound.parse(data)
    assert caught.value.drop_reason == "rtcp"
    assert caught.value.reason == f"rtcp: {detail}"


@settings(max_examples=400)
@given(st.binary(max_size=80))
def test_any_bytes_parse_to_a_packet_or_rtp_error(data: bytes) -> None:
    try:
        packet = RtpPacket.parse(data)
    except RtpError as error:
        assert error.drop_reason in {"truncated", "version", "padding", "extension"}
    else:
        assert RtpPacket.parse(bytes(packet)) == packet


@settings(max_examples=300)
@given(st.binary(max_size=80))
def test_any_bytes_parse_to_rtcp_or_rtp_error(data: bytes) -> None:
    try:
        compound = RtcpCompound.parse(data)
    except RtpError as error:
        assert error.drop_reason == "rtcp"
    else:
        assert bytes(compound) == data


rtp_packets = st.builds(
    RtpPacket,
    payload_type=st.integers(0, 127),
    sequence_number=st.integers(0, 0xFFFF),
    timestamp=st.integers(0, 0xFFFF_FFFF),
    ssrc=st.integers(0, 0xFFFF_FFFF),
    payload=st.binary(max_size=40),
    marker=st.booleans(),
    csrcs=st.lists(st.integers(0, 0xFFFF_FFFF), max_size=15).map(tuple),
    extension_profile=st.none() | st.integers(0, 0xFFFF),
    extension_data=st.binary(max_size=12).map(lambda b: b + bytes(-len(b) % 4)),
    padding_bytes=st.integers(0, 255),
)


@settings(max_examples=300)
@given(rtp_packets)
def test_round_trip(packet: RtpPacket) -> None:
    if packet.extension_profile is None:
        packet = replace(packet, extension_data=b"")
    assert RtpPacket.parse(bytes(packet)) == packet
