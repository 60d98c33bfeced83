"""The signalling of one recording call from the client side (UAC), sans-IO.

:class:`UacCall` sends the dialog-creating INVITE and every later request of one call
(re-INVITE, UPDATE, BYE, and a CANCEL before the answer), each in a client transaction of
:mod:`srs.sip.client_transaction`.  It ACKs every 2xx to INVITE itself (RFC 3261
§13.2.2.4), owns the dialog (§12.1.2) and answers what the server sends into the dialog
(its BYE).  It never reads a clock nor touches a socket: time comes in as ``now``, bytes
to send come out as :class:`Send`, and the shell arms one timer at
:meth:`UacCall.next_timer` and calls :meth:`UacCall.handle_timer`::

    call = UacCall(call_id=..., target=..., local=..., remote=..., via=..., contact=...,
                   reliable=False)
    request, outputs = call.invite(body, content_type, headers, now)
    outputs = call.receive(message, now)    # every parsed message from the server
    outputs = call.handle_timer(now)        # when next_timer() is due
    request, outputs = call.request("BYE", now=now)

Outputs: :class:`Send`, the transactions' :class:`~srs.sip.client_transaction.
ResponseReceived` and :class:`~srs.sip.client_transaction.TimedOut` as they are, and
:class:`ByeReceived`.  Requests from the server are answered statelessly: the same answer
goes to a retransmission, which is all a BYE or an OPTIONS needs.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import assert_never

from srs.errors import SipParseError, UsageError
from srs.sip.client_transaction import (
    ClientOutput,
    ClientTransactions,
    ResponseReceived,
    SendRequest,
    State,
    TimedOut,
    Unmatched,
    cancel_for,
    transaction_key,
)
from srs.sip.dialog import Dialog, DialogId
from srs.sip.headers import Via
from srs.sip.message import ALLOW, SipRequest, SipResponse, build_request, build_response
from srs.sip.timers import SipTimers
from srs.sip.transaction import new_branch
from srs.sip.uri import NameAddr, SipUri

__all__ = ["ByeReceived", "Send", "UacCall", "UacOutput"]


@dataclass(frozen=True, slots=True)
class Send:
    """Put ``data`` on the call's signalling transport, towards the server."""

    data: bytes


@dataclass(frozen=True, slots=True)
class ByeReceived:
    """The server ended the call with a BYE; our 200 is already among the outputs."""

    request: SipRequest


UacOutput = Send | ResponseReceived | TimedOut | ByeReceived


@dataclass(frozen=True, slots=True)
class _Connection:
    """The call's one signalling connection, as its client transactions see it."""

    reliable: bool


class UacCall:
    """The signalling state of one call we place: its transactions and, once the INVITE
    is answered 2xx, its dialog (RFC 3261 §12.1.2).

    ``via`` names our transport and sent-by (each request gets a fresh branch);
    ``contact`` is our Contact (with ``+sip.src``, RFC 7866 §6.1.1); ``local`` and
    ``remote`` are the From (with our tag) and To of the INVITE.  ``timers`` scales the
    transactions' timers (RFC 3261 §17 Table 4; tests shrink them).
    """

    def __init__(
        self,
        *,
        call_id: str,
        target: SipUri,
        local: NameAddr,
        remote: NameAddr,
        via: Via,
        contact: NameAddr,
        reliable: bool,
        timers: SipTimers | None = None,
    ) -> None:
        if local.tag is None:
            raise UsageError("the From of a call needs our tag")
        self.call_id = call_id
        self.target = target
        self.local = local
        self.remote = remote
        self.via = via
        self.contact = contact
        self.reliable = reliable
        self.dialog: Dialog | None = None
        self.transactions: ClientTransactions[_Connection] = ClientTransactions(timers=timers)
        self._connection = _Connection(reliable)
        self._invite: SipRequest | None = None  # the dialog-creating INVITE
        self._acks: dict[int, bytes] = {}  # INVITE CSeq number -> the ACK of its 2xx

    def __len__(self) -> int:
        """Live transactions."""
        return len(self.transactions)

    # -- requests we send ---------------------------------------------------------------

    def invite(
        self, body: bytes, content_type: str, headers: Iterable[tuple[str, str]], now: float
    ) -> tuple[SipRequest, list[UacOutput]]:
        """The dialog-creating INVITE (RFC 3261 §8.1.1, §13.2.1)."""
        if self._invite is not None:
            raise UsageError("the INVITE of this call was already sent")
        request = build_request(
            "INVITE",
            self.target,
            headers=[
                ("Via", str(self.via.with_param("branch", new_branch()))),
                ("From", str(self.local)),
                ("To", str(self.remote)),
                ("Call-ID", self.call_id),
                ("CSeq", "1 INVITE"),
                ("Contact", str(self.contact)),
                ("Allow", ", ".join(ALLOW)),
                *headers,
            ],
            body=body,
            content_type=content_type,
        )
        self._invite = request
        return request, self._start(request, now)

    def request(
        self,
        method: str,
        *,
        now: float,
        body: bytes = b"",
        content_type: str | None = None,
        headers: Iterable[tuple[str, str]] = (),
    ) -> tuple[SipRequest, list[UacOutput]]:
        """A request in the dialog (RFC 3261 §12.2.1.1): re-INVITE, UPDATE, BYE."""
        if self.dialog is None:
            raise UsageError(f"{method} needs an established dialog")
        contact = self.contact if method in ("INVITE", "UPDATE") else None
        request = self.dialog.create_request(
            method, via=self.via, contact=contact, extra_headers=headers, body=body,
            content_type=content_type,
        )
        return request, self._start(request, now)

    def cancel(self, now: float) -> tuple[SipRequest, list[UacOutput]]:
        """CANCEL the dialog-creating INVITE (RFC 3261 §9.1).  Only while it is in
        Proceeding: a CANCEL MUST NOT be sent before a provisional response, and after a
        final one there is nothing left to cancel."""
        invite = self._invite
        pending = self.transactions.get(transaction_key(invite)) if invite else None
        if invite is None or pending is None or pending.state is not State.PROCEEDING:
            raise UsageError("CANCEL needs an INVITE with a provisional and no final response")
        request = cancel_for(invite)
        return request, self._start(request, now)

    def _start(self, request: SipRequest, now: float) -> list[UacOutput]:
        return self._outputs(self.transactions.send(request, self._connection, now))

    # -- what arrives -------------------------------------------------------------------

    def receive(self, message: SipRequest | SipResponse, now: float) -> list[UacOutput]:
        """A parsed message from the server.  Raises ``SipParseError`` for a response
        whose Via or CSeq cannot be read (the shell drops it, RFC 3261 §18.1.2)."""
        if isinstance(message, SipRequest):
            return self._receive_request(message)
        return self._outputs(self.transactions.receive_response(message, now))

    def _outputs(self, outputs: list[ClientOutput[_Connection]]) -> list[UacOutput]:
        """The transactions' outputs as the call's: bytes to send, and 2xx ACKed."""
        result: list[UacOutput] = []
        for output in outputs:
            if isinstance(output, SendRequest):
                result.append(Send(output.data))
            elif isinstance(output, ResponseReceived):
                request, response = output.request, output.response
                if request.method == "INVITE" and 200 <= response.status < 300:
                    result.extend(self._acknowledge(request, response))
                result.append(output)
            elif isinstance(output, TimedOut):
                result.append(output)
            elif isinstance(output, Unmatched):
                result.extend(self._stray(output.response))
            else:
                assert_never(output)
        return result

    def _stray(self, response: SipResponse) -> list[UacOutput]:
        # A 2xx retransmitted after Timer M: still ACK it (RFC 3261 §13.2.2.4).
        if response.cseq.method == "INVITE" and 200 <= response.status < 300:
            ack = self._acks.get(response.cseq.number)
            if ack is not None:
                return [Send(ack)]
        return []

    def _acknowledge(self, invite: SipRequest, response: SipResponse) -> list[UacOutput]:
        """RFC 3261 §13.2.2.4: the UAC core ACKs every 2xx, the first one creating the
        dialog (§12.1.2); a retransmitted 2xx gets the same ACK again."""
        number = invite.cseq.number
        ack = self._acks.get(number)
        if ack is None:
            if self.dialog is None:
                self.dialog = _dialog_from_2xx(invite, response, self.local)
            ack = bytes(self._ack_for_2xx(number))
            self._acks[number] = ack
        return [Send(ack)]

    def _ack_for_2xx(self, number: int) -> SipRequest:
        """§13.2.2.4: an ACK built like an in-dialog request, with the INVITE's CSeq
        number and its own branch; it is not a transaction and is never retransmitted
        on its own."""
        dialog = self.dialog
        if dialog is None:
            raise UsageError("ACK without a dialog")
        routes = dialog.route_set
        # Loose routing only (every RFC 3261 proxy sets ;lr); srs's server adds no routes.
        headers = [
            ("Via", str(self.via.with_param("branch", new_branch()))),
            ("From", str(dialog.local)),
            ("To", str(dialog.remote)),
            ("Call-ID", self.call_id),
            ("CSeq", f"{number} ACK"),
        ]
        headers.extend(("Route", f"<{uri}>") for uri in routes)
        return build_request("ACK", dialog.remote_target, headers=headers)

    def _receive_request(self, request: SipRequest) -> list[UacOutput]:
        if request.method == "ACK":
            return []  # RFC 3261 §17: an ACK is never answered
        ours = (
            self.dialog is not None
            and DialogId(request.call_id, request.to.tag or "", request.from_.tag or "")
            == self.dialog.id
        )
        if not ours:
            return [Send(bytes(build_response(request, 481)))]
        if request.method == "BYE":
            return [Send(bytes(build_response(request, 200))), ByeReceived(request)]
        if request.method == "OPTIONS":
            allow = [("Allow", ", ".join(ALLOW))]
            return [Send(bytes(build_response(request, 200, extra_headers=allow)))]
        if request.method == "INFO":
            return [Send(bytes(build_response(request, 200)))]  # in Allow: taken, ignored
        # The server's re-INVITEs and UPDATEs are not something a recording client takes.
        return [Send(bytes(build_response(request, 488)))]

    # -- timers -------------------------------------------------------------------------

    def next_timer(self) -> float | None:
        return self.transactions.next_timer()

    def handle_timer(self, now: float) -> list[UacOutput]:
        return self._outputs(self.transactions.handle_timer(now))


def _dialog_from_2xx(invite: SipRequest, response: SipResponse, local: NameAddr) -> Dialog:
    """RFC 3261 §12.1.2: the UAC's dialog; the route set is Record-Route reversed, the
    remote target the 2xx's Contact, the remote tag its To tag."""
    remote = response.to
    contact = response.contact
    if contact is None or not isinstance(contact.uri, SipUri):
        raise SipParseError("2xx without a SIP Contact")  # RFC 3261 §13.3.1.4: MUST
    routes = []
    for entry in reversed(response.record_route):
        if not isinstance(entry.uri, SipUri):
            raise SipParseError("Record-Route is not a SIP URI")
        routes.append(entry.uri)
    return Dialog(
        DialogId(invite.call_id, local.tag or "", remote.tag or ""),
        local=local,
        remote=remote,
        remote_target=contact.uri,
        route_set=tuple(routes),
        remote_cseq=0,
        local_cseq=invite.cseq.number,
    )
