"""The one error model of srs.

Two families, after h11's split between remote and local protocol errors:

* :class:`PeerError` -- the peer sent something wrong (bad SIP, SDP, XML, RTP).  Raised by
  pure code, caught exactly once where a response is produced or a packet is dropped and
  counted.  Each carries the SIP status it maps to, so the catcher never has to guess.
* :class:`UsageError` -- our own code called an API wrongly.  A bug: never caught to be
  turned into a response.

:class:`ConfigError` is raised at start-up for a bad setting and names the key.

Anything else that escapes is a bug too: it surfaces with its traceback and the session it
happened in is still finalised.
"""

from __future__ import annotations

__all__ = [
    "SrsError",
    "PeerError",
    "SipParseError",
    "Forbidden",
    "MethodNotAllowed",
    "NotAcceptable",
    "UnsupportedUriScheme",
    "UnsupportedMediaType",
    "BadExtension",
    "SessionIntervalTooSmall",
    "CallDoesNotExist",
    "NotAcceptableHere",
    "ServiceUnavailable",
    "SdpError",
    "MetadataError",
    "RtpError",
    "UsageError",
    "ConfigError",
]

# A reason phrase goes back on the wire: keep it short and printable (RFC 3261 §25.1
# Reason-Phrase excludes CR and LF).
_MAX_REASON_CHARS = 120


def _printable(text: str) -> str:
    cleaned = "".join(ch if ch.isprintable() else "?" for ch in text)
    return cleaned[:_MAX_REASON_CHARS]


class SrsError(Exception):
    """Root of every error srs raises on purpose."""


class PeerError(SrsError):
    """The peer's input is wrong.  ``status`` is the SIP response code it maps to.

    ``reason`` is a short, printable phrase naming the problem; it is safe to use as the
    reason phrase of the response and in logs (it never contains secrets, because pure code
    never puts header values of credential headers into it).
    """

    status: int = 400

    def __init__(self, reason: str, *, status: int | None = None) -> None:
        super().__init__(reason)
        self.reason = _printable(reason)
        if status is not None:
            self.status = status


class SipParseError(PeerError):
    """A SIP message (or part of one) cannot be parsed.  RFC 3261 §21.4.1."""

    status = 400


class Forbidden(PeerError):
    """Authentication failed: missing or wrong credentials, or a source not allowed; or a
    request in a ``sips:`` dialog that did not come over TLS."""

    status = 403


class MethodNotAllowed(PeerError):
    """RFC 3261 §21.4.6: the method is understood but not allowed here."""

    status = 405


class NotAcceptable(PeerError):
    """RFC 3261 §21.4.7: the answer we would send is of a type the request's Accept excludes."""

    status = 406


class UnsupportedUriScheme(PeerError):
    """RFC 3261 §21.4.14 / §8.2.2.1: a Request-URI scheme we do not serve."""

    status = 416


class UnsupportedMediaType(PeerError):
    """RFC 3261 §21.4.13: a body of a type we do not accept."""

    status = 415


class BadExtension(PeerError):
    """RFC 3261 §21.4.15: ``Require`` names option tags we do not support."""

    status = 420

    def __init__(self, unsupported: tuple[str, ...]) -> None:
        super().__init__("Bad Extension")
        self.unsupported = unsupported


class SessionIntervalTooSmall(PeerError):
    """RFC 4028 §6: ``Session-Expires`` below our ``Min-SE``; the answer carries Min-SE."""

    status = 422

    def __init__(self, min_se_s: int) -> None:
        super().__init__("Session Interval Too Small")
        self.min_se_s = min_se_s


class CallDoesNotExist(PeerError):
    """RFC 3261 §21.4.19: no dialog or transaction matches."""

    status = 481


class NotAcceptableHere(PeerError):
    """RFC 3261 §21.4.26: nothing in the offer can be accepted."""

    status = 488


class ServiceUnavailable(PeerError):
    """RFC 3261 §21.5.4: temporarily full; ``retry_after_s`` goes in ``Retry-After``."""

    status = 503

    def __init__(self, reason: str, *, retry_after_s: int = 5) -> None:
        super().__init__(reason)
        self.retry_after_s = retry_after_s


class SdpError(NotAcceptableHere):
    """An SDP body that cannot be parsed or answered (RFC 4566 / RFC 3264)."""


class MetadataError(PeerError):
    """RFC 7865 metadata that cannot be parsed at all (malformed XML, over the limits)."""

    status = 400


class RtpError(PeerError):
    """An RTP/RTCP packet that is dropped.  ``drop_reason`` is the counter it goes to.

    RTP has no response, so ``status`` is unused; the packet is dropped and counted under
    ``drop_reason`` (e.g. ``"version"``, ``"truncated"``, ``"padding"``).
    """

    status = 0

    def __init__(self, drop_reason: str, detail: str = "") -> None:
        super().__init__(f"{drop_reason}: {detail}" if detail else drop_reason)
        self.drop_reason = drop_reason


class UsageError(SrsError):
    """Our own code used an srs API wrongly.  Always a bug; never answered to a peer."""


class ConfigError(SrsError):
    """A setting is invalid.  The message names the key and the offending value."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}")
        self.key = key
        self.problem = problem
