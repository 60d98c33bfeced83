"""The streaming pcap/pcapng reader on hand-built files: formats, resolutions, errors, fuzz."""

from __future__ import annotations

import contextlib
import io
import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from srs.capture import CapturedPacket, CaptureFormatError, read_capture
from tests.capture.frames import (
    ethernet,
    ipv4,
    ng_block,
    ng_epb,
    ng_idb,
    ng_pb,
    ng_shb,
    ng_spb,
    pcap_file,
    udp,
)

FRAME = ethernet(ipv4("10.0.0.1", "10.0.0.2", 17, udp(5060, 5062, b"hello")))
T0_NS = 1_700_000_000_123_456_789


def read_all(data: bytes, name: str = "x.pcap") -> list[CapturedPacket]:
    stream = io.BytesIO(data)
    stream.name = name  # type: ignore[attr-defined]
    return list(read_capture(stream))


def error_of(data: bytes, name: str = "x.pcap") -> CaptureFormatError:
    with pytest.raises(CaptureFormatError) as caught:
        read_all(data, name)
    return caught.value


# ------------------------------------------------------------------------------ pcap


@pytest.mark.parametrize("order", ["<", ">"])
@pytest.mark.parametrize("nanoseconds", [False, True])
def test_pcap_both_byte_orders_and_resolutions(order: str, nanoseconds: bool) -> None:
    data = pcap_file(1, [(T0_NS, FRAME), (T0_NS + 1_000, FRAME[:20])], order=order,
                     nanoseconds=nanoseconds)
    first, second = read_all(data)
    exact = T0_NS if nanoseconds else T0_NS // 1000 * 1000
    assert first == CapturedPacket(exact, 1, len(FRAME), FRAME, 24, 0)
    assert first.timestamp == pytest.approx(exact / 1e9)
    assert second.offset == 24 + 16 + len(FRAME)
    assert second.data == FRAME[:20]


def test_pcap_linktype_field_high_bits_are_fcs_information() -> None:
    data = bytearray(pcap_file(1, [(T0_NS, FRAME)]))
    struct.pack_into("<I", data, 20, 0x1400_0001)  # FCS length 4 and the F bit, Ethernet
    assert read_all(bytes(data))[0].linktype == 1


def test_modified_pcap_records_have_eight_more_bytes() -> None:
    header = struct.pack("<IHHiIII", 0xA1B2CD34, 2, 4, 0, 0, 65535, 1)
    record = struct.pack("<IIII", 5, 6, len(FRAME), len(FRAME)) + bytes(8) + FRAME
    (packet,) = read_all(header + record)
    assert (packet.timestamp_ns, packet.data) == (5_000_006_000, FRAME)


def test_reader_reports_size_and_offset_for_progress(tmp_path: Path) -> None:
    path = tmp_path / "p.pcap"
    path.write_bytes(pcap_file(1, [(T0_NS, FRAME)] * 3))
    reader = read_capture(path)
    assert (reader.format, reader.total_bytes, reader.offset) == ("pcap", path.stat().st_size, 4)
    offsets = [(packet.offset, reader.offset) for packet in reader]
    size = 16 + len(FRAME)
    assert offsets == [(24 + i * size, 24 + (i + 1) * size) for i in range(3)]
    assert reader.offset == reader.total_bytes


# ---------------------------------------------------------------------------- pcapng


@pytest.mark.parametrize("order", ["<", ">"])
def test_pcapng_interfaces_resolutions_and_skipped_blocks(order: str) -> None:
    ip_only = FRAME[14:]
    data = b"".join([
        ng_shb(order, [(4, b"srs test")]),
        ng_idb(order, 1),  # default microseconds
        ng_idb(order, 101, tsresol=9),  # nanoseconds
        ng_idb(order, 113, tsresol=0x80 | 20, tsoffset=-7),  # 2^-20 s, offset -7 s
        ng_block(order, 4, b"\x00\x00\x00\x00"),  # a Name Resolution Block: skipped
        ng_epb(order, 0, 1_700_000_000_123_456, FRAME),
        ng_epb(order, 1, T0_NS, ip_only),
        ng_block(order, 5, bytes(20)),  # an Interface Statistics Block: skipped
        ng_epb(order, 2, 3 << 20 | 1 << 19, b"c" * 16),
        ng_block(order, 0x40000BAD, b"custom data"),  # a custom block: skipped
        ng_pb(order, 1, 42, ip_only),
        ng_spb(order, FRAME),
    ])
    packets = read_all(data, "x.pcapng")
    assert [(p.timestamp_ns, p.linktype, p.interface, p.data) for p in packets] == [
        (1_700_000_000_123_456_000, 1, 0, FRAME),
        (T0_NS, 101, 1, ip_only),
        (3_500_000_000 - 7_000_000_000, 113, 2, b"c" * 16),
        (42, 101, 1, ip_only),
        # §4.4: an SPB has no timestamp; it gets the last one seen; it is interface 0's.
        (42, 1, 0, FRAME),
    ]


def test_pcapng_new_section_resets_interfaces_and_byte_order() -> None:
    data = b"".join([
        ng_shb("<"), ng_idb("<", 1), ng_epb("<", 0, 1, FRAME),
        ng_shb(">"), ng_idb(">", 101, tsresol=9), ng_epb(">", 0, 2, FRAME[14:]),
    ])
    packets = read_all(data)
    assert [(p.linktype, p.timestamp_ns) for p in packets] == [(1, 1000), (101, 2)]
    third_section = data + ng_shb("<") + ng_epb("<", 0, 3, FRAME)
    error = error_of(third_section)
    assert "an interface ID below 0" in str(error)


def test_pcapng_epb_original_length_and_padding() -> None:
    data = ng_shb("<") + ng_idb("<", 1) + ng_epb("<", 0, 0, FRAME[:33], original=1500)
    (packet,) = read_all(data)
    assert (packet.data, packet.original_length) == (FRAME[:33], 1500)


# ----------------------------------------------------------------------------- errors


def test_foreign_file_names_file_offset_and_what_was_expected() -> None:
    error = error_of(b"GIF89a....", "holiday.gif")
    assert str(error) == (
        "holiday.gif: at byte offset 0: expected a pcap magic number (a1b2c3d4 or a1b23c4d, "
        "either byte order) or a pcapng Section Header Block (0a0d0d0a), found bytes 47494638"
    )
    assert (error.path, error.offset) == ("holiday.gif", 0)


def test_gzip_and_empty_files_are_named() -> None:
    assert "gzip-compressed data (decompress it first)" in str(error_of(b"\x1f\x8b\x08\x00rest"))
    assert str(error_of(b"")).endswith("found an empty file")


def test_truncated_pcap_file_header() -> None:
    error = error_of(pcap_file(1, [])[:10])
    assert str(error) == (
        "x.pcap: at byte offset 4: expected 20 bytes of pcap file header, "
        "found only 6 bytes before end of file"
    )


def test_truncated_mid_record_header_and_mid_packet() -> None:
    data = pcap_file(1, [(T0_NS, FRAME), (T0_NS, FRAME)])
    second = 24 + 16 + len(FRAME)
    error = error_of(data[: second + 7])
    assert str(error) == (
        f"x.pcap: at byte offset {second}: expected 16 bytes of pcap record header, "
        "found only 7 bytes before end of file"
    )
    error = error_of(data[: second + 16 + 5])
    assert str(error) == (
        f"x.pcap: at byte offset {second + 16}: expected {len(FRAME)} bytes of packet data "
        f"(record at offset {second}), found only 5 bytes before end of file"
    )
    error = error_of(data[: second + 16])
    assert error.offset == second + 16 and error.found == "end of file"


def test_packets_before_the_truncation_are_yielded() -> None:
    data = pcap_file(1, [(T0_NS, FRAME), (T0_NS, FRAME)])
    reader = read_capture(io.BytesIO(data[:-1]))
    assert next(reader).data == FRAME
    with pytest.raises(CaptureFormatError):
        next(reader)


def test_absurd_record_length_is_refused_before_allocation() -> None:
    data = pcap_file(1, []) + struct.pack("<IIII", 0, 0, 0x7FFF_FFFF, 100)
    error = error_of(data)
    assert str(error) == (
        "x.pcap: at byte offset 32: expected a captured length of at most 262144 bytes, "
        "found 2147483647"
    )


def test_pcap_wrong_major_version() -> None:
    data = bytearray(pcap_file(1, []))
    struct.pack_into("<H", data, 4, 3)
    assert str(error_of(bytes(data))) == (
        "x.pcap: at byte offset 4: expected pcap major version 2, found 3.4"
    )


def test_pcapng_errors_name_offsets() -> None:
    shb = ng_shb("<")
    bad_bom = bytearray(shb)
    bad_bom[8:12] = b"\x01\x02\x03\x04"
    assert str(error_of(bytes(bad_bom))) == (
        "x.pcap: at byte offset 8: expected the pcapng byte-order magic 1a2b3c4d, "
        "found 01020304"
    )
    block = ng_idb("<", 1)
    bad_trailer = bytearray(shb + block)
    bad_trailer[-1] = 0x7F
    error = error_of(bytes(bad_trailer))
    assert error.offset == len(shb) + len(block) - 4
    assert "expected the block's total length" in str(error)
    odd_length = shb + struct.pack("<II", 6, 13)
    error = error_of(odd_length)
    assert (error.offset, error.found) == (len(shb) + 4, "13")
    truncated = shb + ng_idb("<", 1) + ng_epb("<", 0, 0, FRAME)[:-6]
    error = error_of(truncated)
    assert error.offset == len(shb) + len(ng_idb("<", 1)) + 8
    epb_size = len(ng_epb("<", 0, 0, FRAME))
    at = error.offset - 8
    assert error.expected == f"{epb_size - 8} bytes of block of type 6 (at offset {at})"
    epb = bytearray(ng_epb("<", 0, 0, FRAME))
    struct.pack_into("<I", epb, 20, 5000)  # captured length past the block
    error = error_of(shb + ng_idb("<", 1) + bytes(epb))
    assert "a captured length within the block" in str(error)


def test_pcapng_major_version_two_is_refused() -> None:
    shb = bytearray(ng_shb("<"))
    struct.pack_into("<H", shb, 12, 2)
    assert str(error_of(bytes(shb))) == (
        "x.pcap: at byte offset 12: expected pcapng major version 1, found 2.0"
    )


def test_a_path_that_is_foreign_is_closed_and_named(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("just text\n")
    with pytest.raises(CaptureFormatError, match=r"notes.txt: at byte offset 0: expected"):
        read_capture(path)


# ------------------------------------------------------------------------------ fuzz


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300))
def test_any_bytes_raise_only_capture_format_error(data: bytes) -> None:
    with contextlib.suppress(CaptureFormatError):
        read_all(data)


PREFIXES = [pcap_file(1, []), pcap_file(1, [], order=">", nanoseconds=True),
            ng_shb("<") + ng_idb("<", 1), ng_shb(">")]


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(PREFIXES), st.binary(max_size=300))
def test_any_bytes_after_a_good_header_raise_only_capture_format_error(
    prefix: bytes, data: bytes
) -> None:
    try:
        for packet in read_all(prefix + data):
            assert len(packet.data) <= 262144
    except CaptureFormatError as error:
        assert 0 <= error.offset <= len(prefix + data)
