"""The starting corpus of each fuzz target, built from srs's own test inputs.

``python -m tests.fuzz.seeds`` writes ``tests/data/fuzz/<target>/seed-*`` afresh (the
``cov-*`` files a long run added by ``make fuzz-merge`` are left alone).  Seeds are valid
inputs of every shape srs knows -- the RFC 4475 torture messages, the SDP and metadata test
files, whole SIPREC calls as the SIP core and a capture see them -- so a coverage-guided
run starts deep in the parser instead of at its first byte.
"""

from __future__ import annotations

import hashlib
import struct
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

from tests.capture.frames import ethernet, ipv4, ng_epb, ng_idb, ng_shb, pcap_file, tcp, udp
from tests.fuzz.targets import RTP, SIP, TICK, TO_TAG, record
from tests.sipclient import BOUNDARY, metadata, multipart, rtp_packet, sdp_offer

__all__ = ["CORPUS", "build", "main"]

DATA = Path(__file__).resolve().parent.parent / "data"
CORPUS = DATA / "fuzz"


def _files(folder: str, pattern: str) -> list[bytes]:
    return [p.read_bytes() for p in sorted((DATA / folder).glob(pattern))]


def _request(method: str, body: bytes = b"", content_type: str | None = None, *,
             to_tag: str = "", cseq: int = 1, extra: Iterable[str] = ()) -> bytes:
    to = "<sip:srs@127.0.0.1>" + (f";tag={to_tag}" if to_tag else "")
    lines = [
        f"{method} sip:srs@127.0.0.1:5060 SIP/2.0",
        "Via: SIP/2.0/UDP 192.0.2.10:5070;branch=z9hG4bK" + f"{method}{cseq}".lower(),
        "Max-Forwards: 70",
        "From: <sip:src@example.com>;tag=f1",
        f"To: {to}",
        "Call-ID: fuzz-call-1",
        f"CSeq: {cseq} {method}",
        "Contact: <sip:src@192.0.2.10:5070>;+sip.src",
        *extra,
    ]
    if method == "INVITE" and not to_tag:
        lines += ["Require: siprec", "Session-Expires: 1800;refresher=uac", "Supported: timer"]
    if content_type:
        lines.append(f"Content-Type: {content_type}")
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def _invite(labels: tuple[str, ...] = ("inbound", "outbound"), *, secure: bool = False) -> bytes:
    ports = [40000 + 2 * i for i in range(len(labels))]
    extra = ""
    offer = sdp_offer(ports, list(labels))
    if secure:
        offer = offer.replace("RTP/AVP", "RTP/SAVP")
        key = "inline:" + "MTIzNDU2Nzg5MDEyMzQ1Njc4OTAxMjM0NTY3ODkw"
        offer = offer.replace("a=sendonly", f"a=crypto:1 AES_CM_128_HMAC_SHA1_80 {key}\r\na=sendonly")
    content_type, body = multipart(offer + extra, metadata(list(labels)))
    return _request("INVITE", body, content_type)


def _tone_packets(count: int, *, pt: int = 0, ssrc: int = 0x1234) -> list[bytes]:
    return [rtp_packet(i, i * 160, ssrc, bytes([0x55 + i % 8]) * 160, pt=pt) for i in range(count)]


def _dtmf_packets() -> list[bytes]:
    return [rtp_packet(100 + i, 16000, 0x1234, struct.pack("!BBH", 5, 0x0A | (0x80 if i > 2 else 0),
                                                                    160 * (i + 1)),
                       pt=101, marker=i == 0) for i in range(5)]


def _rtcp() -> bytes:
    sender_report = struct.pack("!BBHIIIIII", 0x80, 200, 6, 0x1234, 1, 2, 3, 4, 5)
    receiver_report = struct.pack("!BBHI", 0x80, 201, 1, 0x1234)
    return sender_report + receiver_report


def _call(invite: bytes) -> list[bytes]:
    """One whole call as the receive target reads it."""
    out = [record(SIP, invite), record(TICK, b"\x01")]
    out.append(record(SIP, _request("ACK", to_tag=TO_TAG.decode(), cseq=1)))
    for i, packet in enumerate(_tone_packets(20)):
        out.append(record(RTP + 6 * (i % 2), packet))
    out += [record(RTP, packet) for packet in _dtmf_packets()]
    out += [record(RTP + 3, packet) for packet in _tone_packets(3, ssrc=0x666)]  # off-path
    out.append(record(TICK, b"\x05"))
    out.append(record(SIP, _request("BYE", to_tag=TO_TAG.decode(), cseq=2)))
    out.append(record(TICK, b"\x14"))
    return [b"".join(out)]


def _frames(call: list[tuple[str, int, str, int, bytes]]) -> list[tuple[int, bytes]]:
    return [(1_700_000_000_000_000_000 + i * 20_000_000,
             ethernet(ipv4(src, dst, 17, udp(sport, dport, payload))))
            for i, (src, sport, dst, dport, payload) in enumerate(call)]


def _captures() -> list[bytes]:
    client, server = "192.0.2.10", "192.0.2.1"
    answer = (b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 192.0.2.10:5070;branch=z9hG4bKinvite1\r\n"
              b"From: <sip:src@example.com>;tag=f1\r\nTo: <sip:srs@127.0.0.1>;tag=t\r\n"
              b"Call-ID: fuzz-call-1\r\nCSeq: 1 INVITE\r\nContent-Type: application/sdp\r\n"
              b"Content-Length: 127\r\n\r\n"
              b"v=0\r\no=srs 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n"
              b"m=audio 50000 RTP/AVP 0\r\nm=audio 50002 RTP/AVP 0\r\na=recvonly\r\n")
    call = [(client, 5070, server, 5060, _invite()), (server, 5060, client, 5070, answer)]
    call += [(client, 40000, server, 50000, p) for p in _tone_packets(6)]
    call.append((client, 5070, server, 5060, _request("BYE", to_tag=TO_TAG.decode(), cseq=2)))
    frames = _frames(call)
    classic = pcap_file(1, frames)
    ng = ng_shb("<") + ng_idb("<", 1) + b"".join(ng_epb("<", 0, ts // 1000, f) for ts, f in frames)
    over_tcp = pcap_file(1, [(1_700_000_000_000_000_000, ethernet(ipv4(
        client, server, 6, tcp(5070, 5060, 1, _invite()))))])
    return [classic, ng, over_tcp, pcap_file(1, frames, order=">", nanoseconds=True)]


def _srtp() -> list[bytes]:
    # RTP-shaped packets with a 10-byte tag: they fail authentication, but reach it.
    packets = [p + bytes(10) for p in _tone_packets(4)]
    protected = b"".join(record(1, p) for p in _tone_packets(6))
    return [b"".join(record(0, p) for p in packets), record(0, _rtcp() + bytes(14)), protected]


def build() -> dict[str, list[bytes]]:
    """Every target's seeds."""
    torture = _files("rfc4475", "*.dat")
    sdps = _files("sdp", "*.sdp")
    xmls = _files("metadata", "*.xml")
    invite = _invite()
    sip = [*torture, invite, _invite(secure=True), _request("BYE", to_tag=TO_TAG.decode(), cseq=2),
           _request("OPTIONS"), _request("UPDATE", to_tag=TO_TAG.decode(), cseq=3)]
    content_type, body = multipart(sdp_offer([40000], ["a"]), metadata(["a"]))
    assert content_type.endswith(f"boundary={BOUNDARY}")
    multiparts = [b"\x00" + body.replace(BOUNDARY.encode(), b"b"), b"\x02" + sdps[0],
                  b"\x03" + xmls[0]]
    tones = _tone_packets(40)
    rtp_seeds = [
        b"".join(record(20, p) for p in tones),
        b"".join(record(20, p) for p in [*tones[:10], *_dtmf_packets(), *tones[10:20]]),
        b"".join(record(20, p) for p in [*_tone_packets(20, pt=8), _rtcp()]),
        b"".join(record(20, p) for p in reversed(tones[:12])),
    ]
    return {
        "sip": sip,
        "sip_stream": [b"".join(record(0, m[i:i + 97]) for i in range(0, len(m), 97))
                       for m in (invite, invite + invite, *torture[:8])],
        "multipart": multiparts,
        "sdp": sdps,
        "metadata": [b"".join(record(0, x) for x in xmls[i:i + 2]) for i in range(len(xmls))],
        "rtp": rtp_seeds,
        "srtp": _srtp(),
        "pcap": _captures(),
        "receive": _call(invite) + _call(_invite(("a",), secure=True)) + _call(_invite(("x", "y", "z"))),
    }


def _named(seeds: list[bytes]) -> Iterator[tuple[str, bytes]]:
    for data in seeds:
        yield f"seed-{hashlib.sha1(data, usedforsecurity=False).hexdigest()[:16]}", data


def main() -> int:
    for target, seeds in build().items():
        folder = CORPUS / target
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.glob("seed-*"):
            old.unlink()
        for name, data in _named(seeds):
            (folder / name).write_bytes(data)
        print(f"{target}: {len(seeds)} seeds", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
