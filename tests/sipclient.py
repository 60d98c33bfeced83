"""A small SIPREC recording client for tests: real sockets, loopback only.

Sends RFC 7866 INVITEs (multipart SDP + metadata), ACK, re-INVITE, UPDATE, CANCEL, BYE
over UDP, TCP or TLS, and G.711 RTP with controllable impairments.  Built on srs's own
message builders and parser, so the tests exercise srs's server against bytes that a
real SRC would send.
"""

from __future__ import annotations

import base64
import socket
import ssl
import struct
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from srs.codecs.g711 import pcmu_encode
from srs.sip.message import SipResponse
from srs.sip.parser import StreamParser, parse_message

BOUNDARY = "srsboundary"


def crypto_attribute(suite: str, key_salt: bytes, tag: int = 1) -> str:
    """The value of one RFC 4568 §9.1 ``a=crypto`` line with an inline key."""
    return f"{tag} {suite} inline:{base64.b64encode(key_salt).decode()}"


def sdp_offer(ports: Sequence[int], labels: Sequence[str | None], *, direction: str = "sendonly",
              codecs: str = "0 101", extra: str = "", version: int = 1,
              crypto: Sequence[str] = (), formats: Sequence[str] | None = None) -> str:
    """An SDP offer, one m-line per port; with ``crypto`` (one ``a=crypto`` value per
    m-line, see :func:`crypto_attribute`) the m-lines are RTP/SAVP (RFC 4568 §5).
    ``formats`` (attribute values such as ``"rtpmap:9 G722/8000"``) replace the PCMU and
    telephone-event ``a=rtpmap``/``a=fmtp`` lines of every m-line."""
    lines = ["v=0", f"o=src 42 {version} IN IP4 127.0.0.1", "s=-", "c=IN IP4 127.0.0.1", "t=0 0"]
    if crypto and len(crypto) != len(ports):
        raise ValueError("one a=crypto value per m-line")
    for index, (port, label) in enumerate(zip(ports, labels, strict=True)):
        proto = "RTP/SAVP" if crypto else "RTP/AVP"
        lines.append(f"m=audio {port} {proto} {codecs}")
        if crypto:
            lines.append(f"a=crypto:{crypto[index]}")
        if formats is not None:
            lines += [f"a={value}" for value in formats]
        else:
            lines.append("a=rtpmap:0 PCMU/8000")
            if "101" in codecs.split():
                lines += ["a=rtpmap:101 telephone-event/8000", "a=fmtp:101 0-15"]
        if label is not None:
            lines.append(f"a=label:{label}")
        lines.append(f"a={direction}")
    return "\r\n".join(lines) + "\r\n" + extra


def metadata(labels: Sequence[str], *, session_id: str = "sess-1", mode: str = "complete",
             extra: str = "") -> str:
    parts = ['<?xml version="1.0" encoding="UTF-8"?>\r\n'
             '<recording xmlns="urn:ietf:params:xml:ns:recording:1">',
             f"<datamode>{mode}</datamode>",
             '<group group_id="grp-1"><associate-time>2026-11-23T10:00:00Z</associate-time>'
             '</group>',
             f'<session session_id="{session_id}"><sipSessionID>abc;remote=def</sipSessionID>'
             '<group-ref>grp-1</group-ref></session>']
    for i, label in enumerate(labels):
        parts.append(f'<participant participant_id="p{i}"><nameID aor="sip:user{i}@example.com">'
                     f"<name>User {i}</name></nameID></participant>")
        parts.append(f'<stream stream_id="st{i}" session_id="{session_id}">'
                     f"<label>{label}</label></stream>")
    for i in range(len(labels)):
        other = (i + 1) % len(labels)
        parts.append(f'<participantstreamassoc participant_id="p{i}"><send>st{i}</send>'
                     f"<recv>st{other}</recv></participantstreamassoc>")
    parts.append(extra)
    parts.append("</recording>")
    return "".join(parts)


def multipart(sdp: str, xml: str | None) -> tuple[str, bytes]:
    if xml is None:
        return "application/sdp", sdp.encode()
    body = (f"--{BOUNDARY}\r\nContent-Type: application/sdp\r\n\r\n{sdp}\r\n"
            f"--{BOUNDARY}\r\nContent-Type: application/rs-metadata+xml\r\n"
            f"Content-Disposition: recording-session\r\n\r\n{xml}\r\n--{BOUNDARY}--\r\n")
    return f"multipart/mixed;boundary={BOUNDARY}", body.encode()


@dataclass
class Call:
    call_id: str
    from_tag: str
    to_tag: str | None = None
    cseq: int = 1
    answer: SipResponse | None = None
    route: list[str] = field(default_factory=list)

    @property
    def ports(self) -> list[int]:
        assert self.answer is not None
        return [int(line.split()[1]) for line in self.answer.body.decode().splitlines()
                if line.startswith("m=")]


class SipClient:
    """One signalling connection to the server (UDP socket, or TCP/TLS stream)."""

    def __init__(self, host: str, port: int, transport: str = "udp", *,
                 token: str | None = None, header: str = "X-Auth-Token") -> None:
        self.server = (host, port)
        self.transport = transport
        self.token = token
        self.header = header
        self.scheme = "sip"  # of the Request-URI: "sips" asks for a secure dialog
        if transport == "udp":
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.sock.bind(("127.0.0.1", 0))
        else:
            raw = socket.create_connection(self.server, timeout=5)
            if transport == "tls":
                ctx = ssl.create_default_context()
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
                raw = ctx.wrap_socket(raw)
            self.sock = raw
        self.sock.settimeout(5)
        self.local_port = self.sock.getsockname()[1]
        self.parser = StreamParser()
        self.queue: list = []

    def close(self) -> None:
        self.sock.close()

    # -- raw ----------------------------------------------------------------------------

    def send(self, data: bytes) -> None:
        if self.transport == "udp":
            self.sock.sendto(data, self.server)
        else:
            self.sock.sendall(data)

    def receive(self, timeout: float = 5.0) -> SipResponse:
        deadline = time.monotonic() + timeout
        while not self.queue:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            if self.transport == "udp":
                data, _ = self.sock.recvfrom(65535)
                self.queue.append(parse_message(data))
            else:
                data = self.sock.recv(65535)
                if not data:
                    raise ConnectionError("server closed the connection")
                self.queue.extend(self.parser.feed(data))
        return self.queue.pop(0)

    def final(self, timeout: float = 5.0) -> SipResponse:
        """The next final response (skipping 1xx); requests from the server are kept."""
        while True:
            message = self.receive(timeout)
            if isinstance(message, SipResponse) and message.status >= 200:
                return message

    # -- requests -----------------------------------------------------------------------

    def request(self, method: str, call: Call, *, body: bytes = b"",
                content_type: str | None = None, headers: Sequence[tuple[str, str]] = (),
                cseq: int | None = None, branch: str | None = None, auth: bool = True) -> bytes:
        via_transport = self.transport.upper()
        branch = branch or "z9hG4bK" + uuid.uuid4().hex[:16]
        to = "<sip:srs@127.0.0.1>" + (f";tag={call.to_tag}" if call.to_tag else "")
        lines = [
            f"{method} {self.scheme}:srs@{self.server[0]}:{self.server[1]} SIP/2.0",
            f"Via: SIP/2.0/{via_transport} 127.0.0.1:{self.local_port};branch={branch};rport",
            "Max-Forwards: 70",
            f"From: <sip:src@127.0.0.1>;tag={call.from_tag}",
            f"To: {to}",
            f"Call-ID: {call.call_id}",
            f"CSeq: {cseq if cseq is not None else call.cseq} {method}",
            f"Contact: <sip:src@127.0.0.1:{self.local_port}>;+sip.src",
            "User-Agent: srs-tests",
        ]
        if auth and self.token is not None:
            lines.append(f"{self.header}: {self.token}")
        lines += [f"{k}: {v}" for k, v in headers]
        if content_type:
            lines.append(f"Content-Type: {content_type}")
        lines.append(f"Content-Length: {len(body)}")
        data = ("\r\n".join(lines) + "\r\n\r\n").encode() + body
        self.send(data)
        return data

    def invite(self, labels: Sequence[str | None] = ("inbound", "outbound"), *,
               with_metadata: bool = True, sdp: str | None = None,
               headers: Sequence[tuple[str, str]] = (), auth: bool = True,
               ack: bool = True) -> tuple[Call, SipResponse]:
        call = Call(uuid.uuid4().hex + "@0.0.0.0", uuid.uuid4().hex[:8])
        offer = sdp or sdp_offer([40000 + 2 * i for i in range(len(labels))], labels)
        names = [label or f"x{i}" for i, label in enumerate(labels)]
        xml = metadata(names) if with_metadata else None
        content_type, body = multipart(offer, xml)
        self.request("INVITE", call, body=body, content_type=content_type,
                     headers=[("Require", "siprec"), *headers], auth=auth)
        response = self.final()
        if response.status == 200:
            call.to_tag = response.to.tag
            call.answer = response
            if ack:
                self.ack(call)
        return call, response

    def ack(self, call: Call) -> None:
        self.request("ACK", call, cseq=call.cseq)

    def reinvite(self, call: Call, sdp: str, xml: str | None = None,
                 method: str = "INVITE") -> SipResponse:
        call.cseq += 1
        content_type, body = multipart(sdp, xml)
        self.request(method, call, body=body, content_type=content_type)
        response = self.final()
        if response.status == 200 and method == "INVITE":
            self.ack(call)
        return response

    def bye(self, call: Call) -> SipResponse:
        call.cseq += 1
        self.request("BYE", call)
        return self.final()


def tone(freq_hz: float, start_sample: int, count: int, amplitude: int = 8000) -> np.ndarray:
    n = np.arange(start_sample, start_sample + count)
    return (amplitude * np.sin(2 * np.pi * freq_hz * n / 8000)).astype(np.int16)


def rtp_packet(
    seq: int, ts: int, ssrc: int, payload: bytes, pt: int = 0, marker: bool = False
) -> bytes:
    return struct.pack("!BBHII", 0x80, (0x80 if marker else 0) | pt, seq & 0xFFFF,
                       ts & 0xFFFFFFFF, ssrc) + payload


def constant_payload(value: int) -> bytes:
    """160 samples of one PCMU code (decodes to one constant), to find packets in a WAV."""
    return bytes([value]) * 160


class RtpSender:
    """Sends paced 20 ms PCMU packets to one port."""

    def __init__(self, port: int, ssrc: int = 0x1234) -> None:
        self.dest = ("127.0.0.1", port)
        self.ssrc = ssrc
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)

    def send(self, packet: bytes) -> None:
        self.sock.sendto(packet, self.dest)

    def close(self) -> None:
        self.sock.close()


def send_tones(ports: Sequence[int], freqs: Sequence[float], packets: int, *,
               start_seq: int = 0, start_ts: int = 0, ssrc_base: int = 0x1000) -> None:
    """Real-time two (or more) tone streams, one per port."""
    senders = [RtpSender(port, ssrc_base + i) for i, port in enumerate(ports)]
    t0 = time.monotonic()
    for i in range(packets):
        for sender, freq in zip(senders, freqs, strict=True):
            payload = pcmu_encode(tone(freq, i * 160, 160))
            sender.send(rtp_packet(start_seq + i, start_ts + i * 160, sender.ssrc, payload))
        time.sleep(max(0.0, t0 + (i + 1) * 0.02 - time.monotonic()))
    for sender in senders:
        sender.close()
