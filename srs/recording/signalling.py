"""The recording core's answers, rejections and BYEs, executed against a SIP core.

The recording core (:mod:`srs.recording.core`) never holds the SIP core: it hands its
driver :class:`~srs.recording.outputs.Answer` requests and :class:`Reject`, :class:`Fail`
and :class:`HangUp` outputs.  A driver with the SIP core in its own process (the live
server with one media process, ``srs replay``, the tests) executes them here; a media
worker sends them to the signalling process, which executes them here.
"""

from __future__ import annotations

from srs.recording.outputs import Answer, Fail, HangUp, Reject
from srs.sip.dialog import DialogId
from srs.sip.uas import Output, SipCore

__all__ = ["answer", "signal"]


def answer(core: SipCore, work: Answer, now: float) -> tuple[list[Output], DialogId | None]:
    """``SipCore.answer`` for an :class:`Answer` request: what to send, and its result."""
    return core.answer(work.pending, work.status, now, local=work.local, body=work.body,
                       content_type=work.content_type)


def signal(core: SipCore, output: Reject | Fail | HangUp, now: float) -> list[Output]:
    """What the SIP core sends for a rejection, a 500 or our BYE."""
    if isinstance(output, Reject):
        return core.reject(output.pending, output.error, now)
    if isinstance(output, Fail):
        return core.fail(output.pending, now)
    return core.hang_up(output.dialog_id, output.at, local=output.local)
