"""An in-memory client/server pair: srs call's :class:`UacCall` wired to srs's
:class:`SipCore`, both sans-IO.

In the manner of h11's ``ConnectionPair`` and aioquic's ``client_and_server``: every
message one side emits is serialised, parsed and fed to the other at once; both share a
fake clock that jumps from deadline to deadline; chosen messages can be lost on the way.
The session layer's part is played here directly, as ``srs/server/sessions.py`` plays it:
a NewSession or SessionUpdate is answered with :meth:`SipCore.answer` (at once, or when
the test says), and a session whose 2xx was never ACKed is ended with
:meth:`SipCore.hang_up`.

Everything that crossed is in :attr:`Pair.wire`, each side's other outputs in
:attr:`Pair.client_events` and :attr:`Pair.server_events`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import assert_never

from srs.client.uac import ByeReceived, Send, UacCall, UacOutput
from srs.errors import PeerError
from srs.sip.auth import Authenticator
from srs.sip.client_transaction import ResponseReceived, TimedOut
from srs.sip.dialog import DialogId
from srs.sip.headers import Via
from srs.sip.message import SipMessage, SipRequest
from srs.sip.parser import parse_message
from srs.sip.session_timer import MIN_SE_S
from srs.sip.timers import SipTimers
from srs.sip.transaction import Source, TransactionLayer
from srs.sip.uas import (
    Local,
    NewSession,
    Output,
    Refused,
    SessionEnded,
    SessionUpdate,
    SipCore,
    Transmit,
)
from srs.sip.uri import NameAddr, SipUri

__all__ = ["OFFER", "TINY", "TOKEN", "Pair", "Wire"]

TOKEN = "pair-token"
# RFC 3261 Table 4 at 1/500 scale: a whole call with every timer run out takes a few
# hundred simulated milliseconds and a few wall-clock ones.
TINY = SipTimers(t1_s=0.001, t2_s=0.008, t4_s=0.01, timer_d_s=0.064)
OFFER = (b"v=0\r\no=- 1 1 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\n"
         b"m=audio 40000 RTP/AVP 0\r\na=sendonly\r\n")
ANSWER = (b"v=0\r\no=srs 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n"
          b"m=audio 50000 RTP/AVP 0\r\na=recvonly\r\n")

CLIENT_TO_SERVER = "c>s"
SERVER_TO_CLIENT = "s>c"
_MAX_STEPS = 10_000  # a pair that never settles is a bug in what it drives

ServerEvent = NewSession | SessionUpdate | SessionEnded | TimedOut | Refused
ClientEvent = ResponseReceived | TimedOut | ByeReceived


def label(message: SipMessage) -> str:
    """``INVITE`` for a request, ``200 INVITE`` (status, CSeq method) for a response."""
    if isinstance(message, SipRequest):
        return message.method
    return f"{message.status} {message.cseq.method}"


@dataclass(frozen=True)
class Wire:
    """One message that crossed (or was lost), when and which way."""

    at: float
    direction: str
    message: SipMessage
    lost: bool

    def __str__(self) -> str:
        return f"{self.direction} {label(self.message)}" + (" (lost)" if self.lost else "")


@dataclass
class _Loss:
    direction: str
    label: str
    remaining: int | None  # None: every one


class Pair:
    """One call between a :class:`UacCall` and a :class:`SipCore` over ``transport``.

    ``auto_answer`` makes the session layer answer every NewSession and SessionUpdate 200
    the moment it arrives; without it they wait in :attr:`pending` for :meth:`answer`.
    """

    def __init__(
        self, *, transport: str = "udp", timers: SipTimers = TINY, auto_answer: bool = True,
        min_se_s: int = MIN_SE_S,
    ) -> None:
        self.now = 0.0
        self.timers = timers
        self.auto_answer = auto_answer
        self.local = Local("192.0.2.1", 5060, transport)
        self.peer = Source(transport, "192.0.2.10", 5062)  # the client, as the server sees it
        self.core = SipCore(
            authenticator=Authenticator.from_strings("X-Auth-Token", [TOKEN]),
            transactions=TransactionLayer(timers=timers),
            min_se_s=min_se_s,
        )
        self.call = UacCall(
            call_id="pair-1@192.0.2.10",
            target=SipUri.parse("sip:srs@192.0.2.1:5060"),
            local=NameAddr.parse("<sip:+15005550006@example.com>;tag=src-1"),
            remote=NameAddr.parse("<sip:srs@192.0.2.1:5060>"),
            via=Via.parse(f"SIP/2.0/{transport.upper()} 192.0.2.10:5062;rport"),
            contact=NameAddr.parse(
                f"<sip:srs-call@192.0.2.10:5062;transport={transport}>;+sip.src"
            ),
            reliable=self.peer.reliable,
            timers=timers,
        )
        self.wire: list[Wire] = []
        self.client_events: list[ClientEvent] = []
        self.server_events: list[ServerEvent] = []
        self.pending: list[NewSession | SessionUpdate] = []
        self.dialog_id: DialogId | None = None  # the server's, once it answered 2xx
        self._losses: list[_Loss] = []
        self._queue: deque[tuple[str, bytes]] = deque()

    # -- what the test does -------------------------------------------------------------

    def lose(self, direction: str, what: str, times: int | None = None) -> None:
        """Lose the next ``times`` messages (every one when None) going ``direction``
        whose :func:`label` is ``what``."""
        self._losses.append(_Loss(direction, what, times))

    def invite(self, headers: Sequence[tuple[str, str]] = ()) -> SipRequest:
        """The client's INVITE, with the credential the server asks for."""
        request, outputs = self.call.invite(
            OFFER, "application/sdp",
            [("Require", "siprec"), ("X-Auth-Token", TOKEN), *headers], self.now
        )
        self._client(outputs)
        return request

    def request(self, method: str, body: bytes = b"", content_type: str | None = None,
                headers: Sequence[tuple[str, str]] = ()) -> SipRequest:
        """An in-dialog request from the client (re-INVITE, UPDATE, BYE)."""
        request, outputs = self.call.request(
            method, now=self.now, body=body, content_type=content_type, headers=headers
        )
        self._client(outputs)
        return request

    def cancel(self) -> SipRequest:
        request, outputs = self.call.cancel(self.now)
        self._client(outputs)
        return request

    def hang_up(self) -> None:
        """The server ends the session (what the session layer does at a recording's end)."""
        if self.dialog_id is None:
            raise AssertionError("no dialog to hang up")
        self._server(self.core.hang_up(self.dialog_id, self.now, local=self.local))

    def answer(self, event: NewSession | SessionUpdate, status: int = 200) -> list[Output]:
        """The session layer's answer to ``event``; returns what the core did with it."""
        if event in self.pending:
            self.pending.remove(event)
        if status >= 300:
            outputs = self.core.reject(event.pending, PeerError("Refused", status=status),
                                       self.now)
        else:
            outputs, dialog_id = self.core.answer(
                event.pending, status, self.now, local=self.local, body=ANSWER,
                content_type="application/sdp",
            )
            if isinstance(event, NewSession) and dialog_id is not None:
                self.dialog_id = dialog_id
        self._server(outputs)
        return outputs

    def run_until(self, until: float) -> None:
        """Fire both sides' timers, each at its deadline, up to ``until``; the clock then
        reads ``until``."""
        self._run(until)
        self.now = max(self.now, until)

    def settle(self) -> None:
        """Run until neither side has a timer left (every transaction has ended); the
        clock then reads the last deadline."""
        self._run(float("inf"))

    def _run(self, until: float) -> None:
        for _ in range(_MAX_STEPS):
            deadline = self.next_timer()
            if deadline is None or deadline > until:
                return
            self.now = max(self.now, deadline)
            self._client(self.call.handle_timer(self.now))
            self._server(self.core.handle_timer(self.now))
        raise AssertionError("the pair did not settle")

    def next_timer(self) -> float | None:
        deadlines = [d for d in (self.call.next_timer(), self.core.next_timer()) if d is not None]
        return min(deadlines, default=None)

    # -- what the test reads ------------------------------------------------------------

    def labels(self, since: int = 0) -> list[str]:
        """The wire from message ``since`` on, as ``"c>s INVITE"``, ``"s>c 200 INVITE"``,
        ``"c>s ACK (lost)"``."""
        return [str(w) for w in self.wire[since:]]

    def statuses(self, request: SipRequest) -> list[int]:
        """The statuses the client's TU heard for ``request``, in order."""
        return [e.response.status for e in self.client_events
                if isinstance(e, ResponseReceived) and e.request is request]

    def ended(self) -> list[str]:
        """The reasons of the server's SessionEnded events."""
        return [e.reason for e in self.server_events if isinstance(e, SessionEnded)]

    def idle(self) -> bool:
        """No transaction is live on either side and no timer is armed."""
        return (len(self.call) == 0 and len(self.core.transactions) == 0
                and len(self.core.client) == 0 and self.next_timer() is None)

    # -- plumbing -----------------------------------------------------------------------

    def _client(self, outputs: list[UacOutput]) -> None:
        for output in outputs:
            if isinstance(output, Send):
                self._queue.append((CLIENT_TO_SERVER, output.data))
            elif isinstance(output, ResponseReceived | TimedOut | ByeReceived):
                self.client_events.append(output)
            else:
                assert_never(output)
        self._drain()

    def _server(self, outputs: list[Output]) -> None:
        for output in outputs:
            if isinstance(output, Transmit):
                self._queue.append((SERVER_TO_CLIENT, output.data))
            elif isinstance(output, NewSession | SessionUpdate):
                self.server_events.append(output)
                if self.auto_answer:
                    self.answer(output)
                else:
                    self.pending.append(output)
            elif isinstance(output, SessionEnded):
                self.server_events.append(output)
                if output.reason == "timeout" and output.dialog_id == self.dialog_id:
                    self.hang_up()  # RFC 3261 §13.3.1.4, as the session layer does
            elif isinstance(output, TimedOut | Refused):
                self.server_events.append(output)
            else:
                assert_never(output)
        self._drain()

    def _drain(self) -> None:
        while self._queue:
            direction, data = self._queue.popleft()
            message = parse_message(data)
            lost = self._lost(direction, message)
            self.wire.append(Wire(self.now, direction, message, lost))
            if lost:
                continue
            if direction == CLIENT_TO_SERVER:
                self._server(self.core.receive(message, self.peer, self.now))
            else:
                self._client(self.call.receive(message, self.now))

    def _lost(self, direction: str, message: SipMessage) -> bool:
        what = label(message)
        for loss in self._losses:
            if loss.direction == direction and loss.label == what and loss.remaining != 0:
                if loss.remaining is not None:
                    loss.remaining -= 1
                return True
        return False

