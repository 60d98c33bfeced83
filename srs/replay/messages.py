"""What every replay reads out of a capture: SIP messages and who the recorder is.

Shared by the offline replay (:mod:`srs.replay.offline`) and the live planner
(:mod:`srs.replay.plan`).  Pure: no asyncio, no logging.
"""

from __future__ import annotations

from typing import Any

from srs.capture.packets import StreamChunk
from srs.errors import SipParseError
from srs.sip.message import SipMessage, SipRequest
from srs.sip.parser import SipMessageError, StreamParser, parse_message

__all__ = ["is_siprec_invite", "sip_message", "stream_messages"]


def is_siprec_invite(request: SipRequest) -> bool:
    """A dialog-creating INVITE from a recording client (RFC 7866 §6.1.1): ``Require:
    siprec``, a ``+sip.src`` Contact, or a metadata body part.  Its destination is a
    recorder."""
    try:
        if request.method != "INVITE" or request.to.tag is not None:
            return False
        if "siprec" in (tag.lower() for tag in request.require):
            return True
    except SipParseError:
        return False  # a broken INVITE in the capture: nothing to replay
    contact = request.headers.get("Contact") or ""
    if "+sip.src" in contact:
        return True
    return b"rs-metadata" in request.body


def sip_message(payload: bytes) -> SipMessage | None:
    """The SIP message a captured UDP payload holds, or None (RTP, RTCP, anything else)."""
    head = payload[:16]
    start = payload[:200]
    if not (head.startswith(b"SIP/2.0 ") or b" sip:" in start or b" sips:" in start):
        return None
    try:
        return parse_message(payload)
    except SipMessageError:
        return None


def stream_messages(parsers: dict[Any, StreamParser], chunk: StreamChunk) -> list[SipMessage]:
    """The SIP messages ``chunk`` completes on its TCP flow, with one parser per flow in
    ``parsers``; a flow whose framing is lost starts afresh with its next chunk."""
    parser = parsers.setdefault(chunk.flow, StreamParser())
    try:
        return parser.feed(chunk.data)
    except SipMessageError as error:
        parsers.pop(chunk.flow, None)
        return list(error.messages)
