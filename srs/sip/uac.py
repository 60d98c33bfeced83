"""Client transactions for the few requests srs sends itself (BYE), sans-IO.

RFC 3261 §17.1.2 non-INVITE client transaction, reduced to what a recorder needs: over UDP
the request is retransmitted with Timer E (T1, doubling up to T2) until a final response
or Timer F (64*T1); a final response ends the transaction (late retransmitted responses
then match nothing and are dropped, which is what Timer K's absorption would do too).
Provisional responses stop nothing but move retransmission to T2 (§17.1.2.2).
"""

from __future__ import annotations

import heapq
import itertools
from dataclasses import dataclass

from srs.errors import SipParseError
from srs.sip.message import SipRequest, SipResponse
from srs.sip.timers import T1, T2

__all__ = ["ClientTransactions", "Transmit", "ClientTimedOut", "MAX_CLIENT_TRANSACTIONS"]

MAX_CLIENT_TRANSACTIONS = 4096


@dataclass(frozen=True, slots=True)
class Transmit:
    """Send ``data`` to ``host``:``port`` using the transport of ``peer``."""

    peer: object
    data: bytes
    host: str
    port: int
    call_id: str = ""  # for per-session capture


@dataclass(frozen=True, slots=True)
class ClientTimedOut:
    """Timer F: our request got no final response (the peer is gone)."""

    method: str
    call_id: str


@dataclass(slots=True)
class _Pending:
    request: SipRequest
    data: bytes
    peer: object
    host: str
    port: int
    reliable: bool
    interval_s: float
    next_send: float
    give_up: float


class ClientTransactions:
    def __init__(self, *, t1_s: float = T1, t2_s: float = T2) -> None:
        self.t1_s = t1_s
        self.t2_s = t2_s
        self._pending: dict[tuple[str, str], _Pending] = {}
        self._heap: list[tuple[float, int, tuple[str, str]]] = []
        self._sequence = itertools.count()

    def __len__(self) -> int:
        return len(self._pending)

    def send(
        self, request: SipRequest, peer: object, host: str, port: int, now: float
    ) -> list[Transmit]:
        key = (request.top_via.branch or "", request.method)
        data = bytes(request)
        reliable = bool(getattr(peer, "reliable", False))
        if len(self._pending) < MAX_CLIENT_TRANSACTIONS:
            pending = _Pending(request, data, peer, host, port, reliable, self.t1_s,
                               now + self.t1_s, now + 64 * self.t1_s)
            self._pending[key] = pending
            self._arm(key, pending.give_up if reliable else pending.next_send)
        return [Transmit(peer, data, host, port, request.call_id)]

    def receive_response(self, response: SipResponse, now: float) -> list[Transmit]:
        try:
            key = (response.top_via.branch or "", response.cseq.method)
        except SipParseError:
            return []
        pending = self._pending.get(key)
        if pending is None:
            return []
        if response.status >= 200:
            del self._pending[key]
        else:
            pending.interval_s = self.t2_s  # §17.1.2.2: Proceeding retransmits at T2
        return []

    def next_timer(self) -> float | None:
        while self._heap:
            deadline, _, key = self._heap[0]
            pending = self._pending.get(key)
            if pending is not None and deadline in (pending.next_send, pending.give_up):
                return deadline
            heapq.heappop(self._heap)
        return None

    def handle_timer(self, now: float) -> list[Transmit | ClientTimedOut]:
        outputs: list[Transmit | ClientTimedOut] = []
        while self._heap and self._heap[0][0] <= now:
            _, _, key = heapq.heappop(self._heap)
            pending = self._pending.get(key)
            if pending is None:
                continue
            if now >= pending.give_up:
                del self._pending[key]
                outputs.append(ClientTimedOut(pending.request.method, pending.request.call_id))
            elif not pending.reliable and now >= pending.next_send:
                # Timer E (RFC 3261 §17.1.2.2): double up to T2.
                outputs.append(Transmit(pending.peer, pending.data, pending.host, pending.port,
                                        pending.request.call_id))
                pending.interval_s = min(2 * pending.interval_s, self.t2_s)
                pending.next_send = now + pending.interval_s
                self._arm(key, min(pending.next_send, pending.give_up))
        return outputs

    def _arm(self, key: tuple[str, str], deadline: float) -> None:
        heapq.heappush(self._heap, (deadline, next(self._sequence), key))
