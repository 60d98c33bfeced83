"""``srs replay --target``'s engine (asyncio): each planned session as a new live call.

The plan comes from :func:`srs.replay.plan.plan_capture` (see there for what a session
is and how its offers are rewritten).  :func:`replay_session` places one session through
srs call's UAC driver (:class:`~srs.client.call.Signalling`) and sockets
(:mod:`srs.client.connection`); :func:`replay_live` runs every session of a capture at its
capture offset, with bounded concurrency, each in a task of one TaskGroup.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Callable
from dataclasses import dataclass

from srs.client.call import CallFailed, Signalling, Target, new_uac
from srs.client.connection import RtpSocket, SipConnection
from srs.client.offer import new_identity
from srs.errors import PeerError, UsageError
from srs.replay.plan import (
    REPLAY_OF_HEADER,
    CapturePlan,
    PlannedPacket,
    PlannedRequest,
    SessionPlan,
    carried_headers,
    rewrite_offer,
    sdp_of,
)
from srs.sdp.description import SessionDescription
from srs.siprec.multipart import MissingSdp, split_siprec_body

__all__ = ["ReplayOptions", "ReplayResult", "replay_live", "replay_session"]

# More original sources than this on one m-line share the last socket.
MAX_SOURCES_PER_MLINE = 8
ANSWER_TIMEOUT_S = 32.0  # as srs call (RFC 3261 §13.3.1 leaves the wait to the UAC)

@dataclass(frozen=True)
class ReplayOptions:
    """How sessions are replayed.  ``credential`` is (header name, value), never printed."""

    target: Target
    credential: tuple[str, str] | None = None
    credential_header: str = "X-Auth-Token"
    speed: float = 1.0
    concurrency: int = 100
    ssl_context: ssl.SSLContext | None = None
    answer_timeout_s: float = ANSWER_TIMEOUT_S

    def __post_init__(self) -> None:
        if not self.speed > 0 or self.concurrency < 1:
            raise UsageError("speed and concurrency must be positive")


@dataclass(frozen=True, slots=True)
class ReplayResult:
    """How one session's replay went; ``error`` None when every request was answered as
    in the capture."""

    original_call_id: str
    call_id: str
    error: str | None
    packets_sent: int
    packets_planned: int

    @property
    def ok(self) -> bool:
        return self.error is None


class _Media:
    """The RTP sockets of one replayed session and where each sends."""

    def __init__(self, sockets: dict[tuple[int, tuple[str, int], bool], RtpSocket],
                 first: list[RtpSocket]) -> None:
        self.sockets = sockets
        self.first = first  # per m-line: the socket whose port the offers name
        self.sent = 0

    @classmethod
    async def open(cls, plan: SessionPlan, host: str) -> _Media:
        sockets: dict[tuple[int, tuple[str, int], bool], RtpSocket] = {}
        first: list[RtpSocket] = []
        try:
            for index in range(plan.media_lines()):
                keys = [key for key in plan.socket_keys() if key[0] == index]
                for number, key in enumerate(keys[:MAX_SOURCES_PER_MLINE]):
                    sockets[key] = await RtpSocket.open(host)
                    if number == 0:
                        first.append(sockets[key])
                for key in keys[MAX_SOURCES_PER_MLINE:]:
                    sockets[key] = sockets[keys[MAX_SOURCES_PER_MLINE - 1]]
                if not keys:
                    first.append(await RtpSocket.open(host))
        except BaseException:
            for sock in {id(s): s for s in [*sockets.values(), *first]}.values():
                sock.close()
            raise
        return cls(sockets, first)

    @property
    def ports(self) -> list[int]:
        return [sock.port for sock in self.first]

    def answered(self, body: bytes, content_type: str | None) -> None:
        """Point every socket at the port the answer gives its m-line (RFC 3264 §6)."""
        sdp = split_siprec_body(body, content_type, require_sdp=True).sdp
        if sdp is None:
            raise MissingSdp("no application/sdp answer in the body")
        answer = SessionDescription.parse(sdp)
        for index, media in enumerate(answer.media):
            connection = answer.connection_for(media)
            for (line, _, rtcp_port), sock in self.sockets.items():
                if line != index:
                    continue
                if media.port == 0 or connection is None:
                    sock.destination = None  # declined (RFC 3264 §6)
                else:
                    sock.destination = (connection.host, media.port + (1 if rtcp_port else 0))

    def send(self, packet: PlannedPacket) -> bool:
        sock = self.sockets.get(packet.socket_key)
        if sock is None or sock.destination is None:
            return False
        sock.send(packet.payload)
        self.sent += 1
        return True

    def close(self) -> None:
        for sock in {id(s): s for s in [*self.sockets.values(), *self.first]}.values():
            sock.close()


async def replay_session(plan: SessionPlan, options: ReplayOptions,
                         say: Callable[[str], None]) -> ReplayResult:
    """Replay one planned session as a new call (see the module docstring)."""
    identity = new_identity()
    target = options.target
    connection: SipConnection | None = None
    signalling: Signalling | None = None
    media: _Media | None = None
    original = plan.invite.request
    try:
        try:
            connection = await SipConnection.open(
                target.transport, target.host, target.port, ssl_context=options.ssl_context,
                server_hostname=target.host)
        except (OSError, ssl.SSLError) as exc:
            raise CallFailed(f"cannot reach {target.host}:{target.port} over "
                             f"{target.transport}: {exc}") from None
        media = await _Media.open(plan, connection.local_host)
        uac = new_uac(identity, target, connection, str(original.from_.uri))
        # The captured From (display name, URI) with our tag; the captured To, untagged.
        uac.local = original.from_.with_param("tag", identity.from_tag)
        uac.remote = original.to
        signalling = Signalling(uac, connection, say)
        headers = carried_headers(original, options.credential_header)
        headers.append((REPLAY_OF_HEADER, original.call_id))
        if options.credential is not None:
            headers.append(options.credential)
        content_type = original.headers.get("Content-Type")
        body = rewrite_offer(original.body, content_type, connection.local_host, media.ports)
        say(f"INVITE {target.uri} over {target.transport}, Call-ID {identity.call_id}")
        loop = asyncio.get_running_loop()
        sent_at = loop.time()
        request, outputs = uac.invite(body, content_type or "application/sdp", headers, sent_at)
        answer = await signalling.transact("INVITE", request, outputs, options.answer_timeout_s)
        try:
            media.answered(answer.body, answer.headers.get("Content-Type"))
        except PeerError as exc:
            raise CallFailed(f"INVITE: unusable answer: {exc.reason}") from None
        await _play(plan, options, signalling, media, connection.local_host, sent_at)
        return ReplayResult(original.call_id, identity.call_id, None, media.sent,
                            len(plan.packets))
    except CallFailed as failure:
        return ReplayResult(original.call_id, identity.call_id, str(failure),
                            media.sent if media else 0, len(plan.packets))
    finally:
        if signalling is not None:
            signalling.close()
        if media is not None:
            media.close()
        if connection is not None:
            connection.close()


async def _play(plan: SessionPlan, options: ReplayOptions, signalling: Signalling,
                media: _Media, address: str, invite_sent_at: float) -> None:
    """The session after its answer: packets and requests at their capture times counted
    from the INVITE (a recorder's tracks start when the INVITE arrives), each request
    after the previous one is answered; then the BYE.  What fell due while the target
    was still answering goes at once."""
    loop = asyncio.get_running_loop()
    anchor_wall, anchor_capture = invite_sent_at, plan.invite.at_s
    # At one capture time packets go first: a capture srs wrote lists a time's SIP before
    # its RTP, yet an RTP packet stamped with the BYE's time was counted, so came first.
    events: list[tuple[float, int, PlannedRequest | PlannedPacket]] = [
        (p.at_s, 0, p) for p in plan.packets]
    events += [(r.at_s, 1, r) for r in plan.requests]
    events.sort(key=lambda e: (e[0], e[1]))  # stable: capture order within a time
    pending: asyncio.Task[None] | None = None
    bye_sent = False

    async def request(planned: PlannedRequest) -> None:
        original = planned.request
        what = original.method if original.method != "INVITE" else "re-INVITE"
        content_type = original.headers.get("Content-Type")
        body = rewrite_offer(original.body, content_type, address, media.ports)
        headers = carried_headers(original, options.credential_header)
        if options.credential is not None and options.credential[0] in original.headers:
            headers.append(options.credential)  # only where the capture carried one
        sent, outputs = signalling.uac.request(original.method, now=loop.time(), body=body,
                                               content_type=content_type, headers=headers)
        captured = plan.status_of(original)
        try:
            answer = await signalling.transact(what, sent, outputs, options.answer_timeout_s)
        except CallFailed as failure:
            if captured is not None and captured >= 300:
                signalling.say(f"{failure}, as in the capture ({captured})")
                return
            raise
        if captured is not None and captured >= 300:
            raise CallFailed(f"{what} answered {answer.status}, the capture's {captured}")
        if original.method == "INVITE" and sdp_of(answer) is not None:
            try:
                media.answered(answer.body, answer.headers.get("Content-Type"))
            except PeerError as exc:
                raise CallFailed(f"{what}: unusable answer: {exc.reason}") from None

    async def settle() -> None:
        nonlocal pending
        if pending is not None:
            task, pending = pending, None
            await task

    try:
        for at_s, _, event in events:
            delay = anchor_wall + (at_s - anchor_capture) / options.speed - loop.time()
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(signalling.remote_bye.wait(), delay)
            if signalling.remote_bye.is_set():
                break
            if pending is not None and pending.done():
                await settle()
            if isinstance(event, PlannedRequest):
                await settle()
                if event.request.method == "BYE":
                    bye_sent = True
                    await request(event)
                    break
                pending = asyncio.ensure_future(request(event))
            elif not media.send(event) and pending is not None:
                await settle()  # a re-INVITE's answer may open this m-line
                media.send(event)
        await settle()
    finally:
        if pending is not None:
            pending.cancel()
            await asyncio.gather(pending, return_exceptions=True)
    if signalling.remote_bye.is_set():
        if plan.ended_by_recorder:
            signalling.say("the server ended the call with a BYE, as in the capture")
            return
        raise CallFailed("the server ended the call with a BYE")
    if not bye_sent:
        sent, outputs = signalling.uac.request("BYE", now=loop.time())
        await signalling.transact("BYE", sent, outputs, options.answer_timeout_s)


async def replay_live(
    plan: CapturePlan,
    options: ReplayOptions,
    say: Callable[[str, str], None],
    done: Callable[[ReplayResult], None] | None = None,
) -> list[ReplayResult]:
    """Replay every session of ``plan``, each starting at its capture offset from the
    first (divided by the speed), at most ``options.concurrency`` at once; results in
    plan order.  ``say(original Call-ID, line)`` gets each session's steps, ``done``
    each result as its session ends."""
    loop = asyncio.get_running_loop()
    slots = asyncio.Semaphore(options.concurrency)
    results: list[ReplayResult | None] = [None] * len(plan.sessions)
    if not plan.sessions:
        return []
    first_s = min(s.invite.at_s for s in plan.sessions)
    order = sorted(range(len(plan.sessions)), key=lambda i: plan.sessions[i].invite.at_s)

    async def one(number: int, session: SessionPlan) -> None:
        try:
            result = await replay_session(
                session, options, lambda line: say(session.call_id, line))
            results[number] = result
            if done is not None:
                done(result)
        finally:
            slots.release()

    start = loop.time()
    async with asyncio.TaskGroup() as group:
        for number in order:
            session = plan.sessions[number]
            offset_s = (session.invite.at_s - first_s) / options.speed
            await asyncio.sleep(max(0.0, start + offset_s - loop.time()))
            await slots.acquire()
            group.create_task(one(number, session), name=f"srs-replay-{number + 1}")
    return [r for r in results if r is not None]
