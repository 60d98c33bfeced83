"""Raw SIP over UDP for the end-to-end tests: just enough of a client to ask and listen.

The server is the thing under test, so these helpers build requests by hand and read
responses loosely (status line, headers by lower-case name, body); nothing here reuses srs's
own parser.
"""

from __future__ import annotations

import re
import secrets
import socket
import time
from dataclasses import dataclass, field

SIPREC_BOUNDARY = "srs-e2e-boundary"


@dataclass(frozen=True, slots=True)
class SipResponse:
    status: int
    reason: str
    headers: dict[str, list[str]]
    body: bytes
    raw: bytes

    def header(self, name: str) -> str | None:
        values = self.headers.get(name.lower())
        return values[0] if values else None


_COMPACT = {"i": "call-id", "f": "from", "t": "to", "v": "via", "l": "content-length",
            "c": "content-type", "m": "contact", "k": "supported", "s": "subject",
            "e": "content-encoding", "o": "event", "u": "allow-events"}


def parse_response(data: bytes) -> SipResponse:
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("utf-8", "replace").split("\r\n")
    match = re.fullmatch(r"SIP/2\.0 (\d{3}) ?(.*)", lines[0])
    if match is None:
        raise ValueError(f"not a SIP response: {lines[0]!r}")
    headers: dict[str, list[str]] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        key = name.strip().lower()
        headers.setdefault(_COMPACT.get(key, key), []).append(value.strip())
    return SipResponse(int(match.group(1)), match.group(2), headers, body, data)


def new_branch() -> str:
    return "z9hG4bK-e2e-" + secrets.token_hex(8)


def options_request(host: str, port: int, local_port: int) -> bytes:
    call_id = secrets.token_hex(8)
    return (
        f"OPTIONS sip:srs@{host}:{port} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {host}:{local_port};branch={new_branch()};rport\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:probe@{host}>;tag={secrets.token_hex(4)}\r\n"
        f"To: <sip:srs@{host}:{port}>\r\n"
        f"Call-ID: {call_id}@e2e\r\n"
        "CSeq: 1 OPTIONS\r\n"
        "Accept: application/sdp\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


def sip_options(port: int, host: str = "127.0.0.1", timeout_s: float = 0.5) -> SipResponse | None:
    """Send one OPTIONS over UDP; the final response, or None when none came in time."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((host, 0))
        sock.settimeout(timeout_s)
        sock.sendto(options_request(host, port, sock.getsockname()[1]), (host, port))
        deadline = time.monotonic() + timeout_s
        while (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            try:
                data = sock.recv(65535)
            except (TimeoutError, ConnectionRefusedError):
                return None
            response = parse_response(data)
            if response.status >= 200:
                return response
    return None


def sdp_offer(host: str, first_port: int, labels: tuple[str, ...]) -> str:
    lines = [
        "v=0",
        f"o=- 1 1 IN IP4 {host}",
        "s=Twilio Media Gateway",
        f"c=IN IP4 {host}",
        "t=0 0",
    ]
    for n, label in enumerate(labels):
        lines += [
            f"m=audio {first_port + 2 * n} RTP/AVP 0",
            "a=rtpmap:0 PCMU/8000",
            f"a=label:{label}",
            "a=sendonly",
        ]
    return "\r\n".join(lines) + "\r\n"


def rs_metadata(labels: tuple[str, ...], custom: dict[str, str]) -> str:
    """RFC 7865 metadata: one participant sending each labelled stream, receiving the rest."""
    session = "c2Vzc2lvbi1lMmU="
    parts = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<recording xmlns="urn:ietf:params:xml:ns:recording:1">',
        "  <datamode>complete</datamode>",
        f'  <session session_id="{session}"><sipSessionID>e2e</sipSessionID></session>',
    ]
    parts.extend(
        f'  <participant participant_id="cGFydGljaXBhbnQ{n}">'
        f'<nameID aor="sip:+1555000{n:04d}@example.com"><name>Party {n}</name></nameID>'
        "</participant>"
        for n in range(len(labels))
    )
    for n, label in enumerate(labels):
        parts.append(
            f'  <stream stream_id="c3RyZWFt{n}" session_id="{session}">'
            f"<label>{label}</label></stream>"
        )
    for n, _label in enumerate(labels):
        recv = "".join(f"<recv>c3RyZWFt{m}</recv>" for m in range(len(labels)) if m != n)
        parts.append(
            f'  <participantstreamassoc participant_id="cGFydGljaXBhbnQ{n}">'
            f"<send>c3RyZWFt{n}</send>{recv}</participantstreamassoc>"
        )
    parts.append('  <extensiondata xmlns:tw="urn:x-twilio:siprec">')
    parts += [f'    <tw:Parameter name="{k}" value="{v}"/>' for k, v in custom.items()]
    parts += ["  </extensiondata>", "</recording>", ""]
    return "\r\n".join(parts)


@dataclass
class RawSiprecCall:
    """A SIPREC INVITE dialog driven by hand over UDP (for tests that need to stop mid-call)."""

    server_port: int
    host: str = "127.0.0.1"
    call_id: str = field(default_factory=lambda: f"{secrets.token_hex(12)}@0.0.0.0")
    from_tag: str = field(default_factory=lambda: secrets.token_hex(4))
    sock: socket.socket = field(init=False)

    def __post_init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((self.host, 0))
        self.local_port = self.sock.getsockname()[1]
        self.to_tag: str | None = None
        self.remote_target: str | None = None
        self.invite_branch = new_branch()

    def close(self) -> None:
        self.sock.close()

    def _via(self, branch: str) -> str:
        return f"SIP/2.0/UDP {self.host}:{self.local_port};branch={branch};rport"

    def invite_bytes(
        self,
        *,
        headers: dict[str, str],
        media_port: int,
        labels: tuple[str, ...],
        custom: dict[str, str],
    ) -> bytes:
        body = (
            f"--{SIPREC_BOUNDARY}\r\nContent-Type: application/sdp\r\n\r\n"
            f"{sdp_offer(self.host, media_port, labels)}"
            f"\r\n--{SIPREC_BOUNDARY}\r\nContent-Type: application/rs-metadata+xml\r\n"
            "Content-Disposition: recording-session\r\n\r\n"
            f"{rs_metadata(labels, custom)}"
            f"\r\n--{SIPREC_BOUNDARY}--\r\n"
        ).encode()
        extra = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        head = (
            f"INVITE sip:srs@{self.host}:{self.server_port} SIP/2.0\r\n"
            f"Via: {self._via(self.invite_branch)}\r\n"
            "Max-Forwards: 70\r\n"
            f"From: <sip:+15550001111@example.com>;tag={self.from_tag}\r\n"
            f"To: <sip:srs@{self.host}:{self.server_port}>\r\n"
            f"Call-ID: {self.call_id}\r\n"
            "CSeq: 1 INVITE\r\n"
            f"Contact: <sip:twilio@{self.host}:{self.local_port}>;+sip.src\r\n"
            "Require: siprec\r\n"
            "User-Agent: Twilio Gateway\r\n"
            f"{extra}"
            f"Content-Type: multipart/mixed;boundary={SIPREC_BOUNDARY}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        return head + body

    def invite(self, timeout_s: float = 5.0, **kwargs: object) -> SipResponse:
        """Send the INVITE (retransmitting as RFC 3261 Timer A would) until a final response."""
        data = self.invite_bytes(**kwargs)  # type: ignore[arg-type]
        deadline = time.monotonic() + timeout_s
        interval = 0.5
        self.sock.sendto(data, (self.host, self.server_port))
        next_send = time.monotonic() + interval
        provisional = False
        while (now := time.monotonic()) < deadline:
            self.sock.settimeout(max(0.01, min(deadline, next_send) - now))
            try:
                response = parse_response(self.sock.recv(65535))
            except TimeoutError:
                if not provisional and time.monotonic() >= next_send:
                    self.sock.sendto(data, (self.host, self.server_port))
                    interval = min(interval * 2, 4.0)
                    next_send = time.monotonic() + interval
                continue
            if response.status < 200:
                provisional = True
                continue
            if 200 <= response.status < 300:
                to = response.header("to") or ""
                tag = re.search(r";\s*tag=([^;>\s]+)", to)
                self.to_tag = tag.group(1) if tag else None
                contact = re.search(r"<([^>]+)>", response.header("contact") or "")
                self.remote_target = (
                    contact.group(1) if contact else f"sip:srs@{self.host}:{self.server_port}"
                )
            else:
                self._ack_non_2xx(response)
            return response
        raise TimeoutError(f"no final response to the INVITE within {timeout_s} s")

    def _ack_non_2xx(self, response: SipResponse) -> None:
        # RFC 3261 §17.1.1.3: same branch as the INVITE, To from the response.
        self.sock.sendto(
            (
                f"ACK sip:srs@{self.host}:{self.server_port} SIP/2.0\r\n"
                f"Via: {self._via(self.invite_branch)}\r\n"
                "Max-Forwards: 70\r\n"
                f"From: <sip:+15550001111@example.com>;tag={self.from_tag}\r\n"
                f"To: {response.header('to')}\r\n"
                f"Call-ID: {self.call_id}\r\n"
                "CSeq: 1 ACK\r\n"
                "Content-Length: 0\r\n\r\n"
            ).encode(),
            (self.host, self.server_port),
        )

    def _in_dialog(self, method: str, cseq: int) -> bytes:
        return (
            f"{method} {self.remote_target} SIP/2.0\r\n"
            f"Via: {self._via(new_branch())}\r\n"
            "Max-Forwards: 70\r\n"
            f"From: <sip:+15550001111@example.com>;tag={self.from_tag}\r\n"
            f"To: <sip:srs@{self.host}:{self.server_port}>;tag={self.to_tag}\r\n"
            f"Call-ID: {self.call_id}\r\n"
            f"CSeq: {cseq} {method}\r\n"
            "Content-Length: 0\r\n\r\n"
        ).encode()

    def ack(self) -> None:
        self.sock.sendto(self._in_dialog("ACK", 1), (self.host, self.server_port))

    def bye(self, timeout_s: float = 5.0) -> SipResponse:
        """Send a BYE (CSeq 2), retransmitting every 0.5 s, until its final response."""
        data = self._in_dialog("BYE", 2)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.sock.sendto(data, (self.host, self.server_port))
            self.sock.settimeout(0.5)
            try:
                while True:
                    response = parse_response(self.sock.recv(65535))
                    if response.status >= 200 and "BYE" in (response.header("cseq") or ""):
                        return response
            except TimeoutError:
                continue
        raise TimeoutError(f"no final response to the BYE within {timeout_s} s")


def answer_audio_ports(sdp: bytes) -> list[int]:
    """The ports of the m=audio lines of an SDP body, in order."""
    return [int(p) for p in re.findall(rb"^m=audio (\d+) ", sdp, flags=re.MULTILINE)]
