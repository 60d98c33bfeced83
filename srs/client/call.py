"""One recording call, start to end (asyncio): the shell around :class:`UacCall`.

:func:`place_call` opens the call's sockets, sends the SIPREC INVITE, ACKs, streams every
track in real time, sends the hold re-INVITEs and the metadata UPDATE when their time
comes, and ends with a BYE.  It reports each step as a line through a callback and
returns a :class:`CallResult`; it raises nothing for what the server did (a failure is in
the result), only for bugs.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import assert_never

import numpy as np
import numpy.typing as npt

from srs.client.connection import RtpSocket, SipConnection, TransportName
from srs.client.encode import PACKETS_PER_SECOND, EncodedTrack, encode_track, send_codec
from srs.client.media import PACKET_INTERVAL_S, RtpStream, resample, send_paced, to_int16
from srs.client.offer import (
    METADATA_TYPE,
    SDP_TYPE,
    AnsweredMedia,
    CallIdentity,
    OfferedTrack,
    new_identity,
    offer_sdp,
    read_answer,
    recording_metadata,
    siprec_body,
)
from srs.client.uac import ByeReceived, Send, UacCall, UacOutput
from srs.errors import PeerError, SipParseError, UsageError
from srs.rtp.srtp import SrtpSuite
from srs.sdp.description import Direction
from srs.sip.client_transaction import ResponseReceived, TimedOut
from srs.sip.headers import Via
from srs.sip.message import SipRequest, SipResponse
from srs.sip.uri import NameAddr, SipUri

__all__ = ["CallFailed", "CallPlan", "CallResult", "Signalling", "Target", "new_uac", "place_call"]

DEFAULT_PORTS = {"udp": 5060, "tcp": 5060, "tls": 5061}  # RFC 3261 §19.1.2
# A server that sent 1xx owes a final answer; RFC 3261 leaves the wait to the UAC (§13.3.1).
ANSWER_TIMEOUT_S = 32.0


@dataclass(frozen=True, slots=True)
class Target:
    """Where calls go: the Request-URI and the transport address derived from it."""

    uri: SipUri
    transport: TransportName
    host: str
    port: int

    @classmethod
    def parse(cls, text: str, transport: TransportName | None = None) -> Target:
        """``sip:HOST[:PORT][;transport=udp|tcp|tls]`` or ``sips:HOST[:PORT]``.

        ``transport`` (the command line's) wins; else the URI's parameter; else TLS for
        ``sips:`` (RFC 3261 §19.1.1) and UDP otherwise.
        """
        try:
            uri = SipUri.parse(text)
        except SipParseError:
            raise UsageError(f"not a sip: or sips: URI: {text!r}") from None
        chosen = transport or uri.transport or ("tls" if uri.scheme == "sips" else "udp")
        if chosen not in DEFAULT_PORTS:
            raise UsageError(f"transport must be udp, tcp or tls, not {chosen!r}")
        host = uri.host[1:-1] if uri.host.startswith("[") else uri.host
        port = uri.port or DEFAULT_PORTS[chosen]
        return cls(uri, chosen, host, port)  # type: ignore[arg-type]


@dataclass(frozen=True)
class CallPlan:
    """Everything one call needs; shared by every call of a run.

    ``tracks`` are int16 arrays at ``track_rate_hz``, one per label; :meth:`encoded` gives
    them in each offered codec, encoded once and shared by every call.  ``duration_s``
    None: the call lasts the longest track; otherwise that long, tracks repeating.
    """

    target: Target
    labels: tuple[str, ...]
    tracks: tuple[npt.NDArray[np.int16], ...]
    aors: tuple[str, ...]
    credential: tuple[str, str] | None = None  # (header name, value); never printed
    parameters: Mapping[str, str] = field(default_factory=dict)
    srtp: SrtpSuite | None = None
    codecs: tuple[str, ...] = ("PCMU", "PCMA")
    duration_s: float | None = None
    hold_at_s: float | None = None
    hold_for_s: float = 2.0
    metadata_update_at_s: float | None = None
    ssl_context: ssl.SSLContext | None = None
    user_agent: str = "srs-call"
    account_sid: str | None = None
    answer_timeout_s: float = ANSWER_TIMEOUT_S
    track_rate_hz: int = 8000
    _encoded: dict[str, tuple[EncodedTrack, ...]] = field(
        default_factory=dict, init=False, repr=False, compare=False)

    @property
    def total_frames(self) -> int:
        if self.duration_s is not None:
            return max(1, round(self.duration_s / PACKET_INTERVAL_S))
        longest = max(len(t) for t in self.tracks)
        return max(1, -(-longest * PACKETS_PER_SECOND // self.track_rate_hz))

    def encoded(self, name: str) -> tuple[EncodedTrack, ...]:
        """Every track as codec ``name``'s payloads, resampled to its rate (cached)."""
        codec = send_codec(name)
        if codec.name not in self._encoded:
            self._encoded[codec.name] = tuple(
                encode_track(codec, to_int16(resample(t.astype(np.float64), self.track_rate_hz,
                                                      codec.sample_rate_hz)))
                for t in self.tracks)
        return self._encoded[codec.name]


@dataclass(frozen=True, slots=True)
class CallResult:
    """How one call went.  ``error`` is None when every request got a 2xx."""

    number: int
    call_id: str
    call_sid: str
    error: str | None
    answered: tuple[AnsweredMedia, ...] = ()
    packets: tuple[int, ...] = ()

    @property
    def ok(self) -> bool:
        return self.error is None


class CallFailed(Exception):
    """The server refused or did not answer; the message says which request and how."""


class Signalling:
    """Drives a :class:`UacCall` over a :class:`SipConnection` with one timer."""

    def __init__(self, uac: UacCall, connection: SipConnection, say: Callable[[str], None]):
        self.uac = uac
        self.connection = connection
        self.say = say
        self.remote_bye = asyncio.Event()
        # id(request) -> (what to call it in lines, the future of its final response)
        self._waiting: dict[int, tuple[str, asyncio.Future[SipResponse | None]]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._loop = asyncio.get_running_loop()
        connection.on_message = self._receive

    def _receive(self, message: SipRequest | SipResponse) -> None:
        try:
            outputs = self.uac.receive(message, self._loop.time())
        except SipParseError:
            self.connection.dropped += 1  # RFC 3261 §18.1.2: drop what cannot be matched
            return
        self._handle(outputs)

    def _fire(self) -> None:
        self._timer = None
        self._handle(self.uac.handle_timer(self._loop.time()))

    def _handle(self, outputs: list[UacOutput]) -> None:
        for output in outputs:
            if isinstance(output, Send):
                self.connection.send(output.data)
            elif isinstance(output, ResponseReceived):
                what, future = self._waiting.get(id(output.request), ("", None))
                status = output.response.status
                if future is not None and not future.done():
                    if status < 200:
                        self.say(f"{what} -> {status} {output.response.reason}")
                    else:
                        future.set_result(output.response)
            elif isinstance(output, TimedOut):
                _, future = self._waiting.get(id(output.request), ("", None))
                if future is not None and not future.done():
                    future.set_result(None)
            elif isinstance(output, ByeReceived):
                self.remote_bye.set()
            else:
                assert_never(output)
        self._rearm()

    def _rearm(self) -> None:
        deadline = self.uac.next_timer()
        if self._timer is not None and (deadline is None or self._timer.when() != deadline):
            self._timer.cancel()
            self._timer = None
        if deadline is not None and self._timer is None:
            self._timer = self._loop.call_at(deadline, self._fire)

    async def transact(self, what: str, request: SipRequest, outputs: list[UacOutput],
                       timeout_s: float) -> SipResponse:
        """Send ``request`` and wait for its final response; CallFailed unless 2xx."""
        future: asyncio.Future[SipResponse | None] = self._loop.create_future()
        self._waiting[id(request)] = (what, future)
        try:
            self._handle(outputs)
            try:
                response = await asyncio.wait_for(asyncio.shield(future), timeout_s)
            except TimeoutError:
                response = None
        finally:
            del self._waiting[id(request)]
        if response is None:
            if self.connection.lost:
                raise CallFailed(f"{what}: the server closed the connection")
            raise CallFailed(f"{what}: no answer (timeout)")
        self.say(f"{what} -> {response.status} {response.reason}")
        if not 200 <= response.status < 300:
            raise CallFailed(f"{what} answered {response.status} {response.reason}")
        return response

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()


def _headers(plan: CallPlan, identity: CallIdentity) -> list[tuple[str, str]]:
    """The INVITE's extra headers, Twilio-shaped (INTEROP.md)."""
    headers = [
        ("Require", "siprec"),  # RFC 7866 §6.1.1
        ("User-Agent", plan.user_agent),
        ("X-Twilio-CallSid", identity.call_sid),
        ("X-Twilio-AccountSid", identity.account_sid),
    ]
    if plan.credential is not None:
        headers.append(plan.credential)
    for name, value in plan.parameters.items():
        headers.append((name if name.lower().startswith("x-") else f"X-{name}", value))
    return headers


async def place_call(plan: CallPlan, number: int, say: Callable[[str], None]) -> CallResult:
    """Place call ``number`` of a run; ``say`` gets one line per step."""
    identity = new_identity(plan.account_sid)
    target = plan.target
    result_answered: tuple[AnsweredMedia, ...] = ()
    streams: list[RtpStream | None] = []
    audio: list[EncodedTrack | None] = []
    sockets: list[RtpSocket] = []
    connection: SipConnection | None = None
    signalling: Signalling | None = None
    try:
        try:
            connection = await SipConnection.open(
                target.transport, target.host, target.port, ssl_context=plan.ssl_context,
                server_hostname=target.host,
            )
        except (OSError, ssl.SSLError) as exc:
            raise CallFailed(f"cannot reach {target.host}:{target.port} over "
                             f"{target.transport}: {exc}") from None
        for _ in plan.labels:  # one at a time: the finally closes those opened if one fails
            sockets.append(await RtpSocket.open(connection.local_host))  # noqa: PERF401
        offered = tuple(
            OfferedTrack.make(label, sock.port, aor, plan.srtp)
            for label, sock, aor in zip(plan.labels, sockets, plan.aors, strict=True)
        )
        uac = new_uac(identity, target, connection, plan.aors[0])
        signalling = Signalling(uac, connection, say)
        say(f"INVITE {target.uri} over {target.transport}, Call-ID {identity.call_id}, "
            f"CallSid {identity.call_sid}")
        sdp = offer_sdp(connection.local_host, offered, session_id=identity.sdp_session_id,
                        codecs=plan.codecs)
        content_type, body = siprec_body(sdp, recording_metadata(identity, offered,
                                                                 plan.parameters))
        request, outputs = uac.invite(body, content_type, _headers(plan, identity),
                                      asyncio.get_running_loop().time())
        answer = await signalling.transact("INVITE", request, outputs, plan.answer_timeout_s)
        try:
            result_answered = read_answer(answer.body, offered, plan.codecs)
        except PeerError as exc:
            raise CallFailed(f"INVITE: unusable answer: {exc.reason}") from None
        for index, (media, sock, track) in enumerate(
                zip(result_answered, sockets, offered, strict=True)):
            if media.codec is None or not media.accepted:
                say(f"  {media.label}: declined (port 0)")
                streams.append(None)
                audio.append(None)
                continue
            sock.destination = (media.host, media.port)
            crypto = f", SRTP {media.srtp}" if media.srtp else ""
            say(f"  {media.label}: {media.codec} to {media.host}:{media.port}{crypto}")
            streams.append(RtpStream(send_codec(media.codec), media.payload_type,
                                     srtp=track.srtp, key_salt=track.key_salt))
            audio.append(plan.encoded(media.codec)[index])
        if not any(streams):
            raise CallFailed("INVITE: the answer declined every stream")
        await _talk(plan, identity, offered, signalling, sockets, streams, audio)
        if signalling.remote_bye.is_set():
            raise CallFailed("the server ended the call with a BYE")
        request, outputs = uac.request("BYE", now=asyncio.get_running_loop().time())
        await signalling.transact("BYE", request, outputs, plan.answer_timeout_s)
        packets = tuple(s.packets if s else 0 for s in streams)
        say("sent " + ", ".join(f"{n} packets on {label}"
                                for n, label in zip(packets, plan.labels, strict=True)))
        return CallResult(number, identity.call_id, identity.call_sid, None, result_answered,
                          packets)
    except CallFailed as failure:
        return CallResult(number, identity.call_id, identity.call_sid, str(failure),
                          result_answered, tuple(s.packets if s else 0 for s in streams))
    finally:
        if signalling is not None:
            signalling.close()
        for sock in sockets:
            sock.close()
        if connection is not None:
            connection.close()


def new_uac(
    identity: CallIdentity, target: Target, connection: SipConnection, caller: str
) -> UacCall:
    host = connection.local_host
    host = f"[{host}]" if ":" in host else host
    transport = connection.name
    return UacCall(
        call_id=identity.call_id,
        target=target.uri,
        # Twilio's From is the caller; here the AOR of the first participant.
        local=NameAddr.parse(f"<{caller}>;tag={identity.from_tag}"),
        remote=NameAddr.parse(f"<{target.uri}>"),
        via=Via.parse(f"SIP/2.0/{transport.upper()} {host}:{connection.local_port};rport"),
        # RFC 7866 §6.1.1: the SRC marks its Contact with the +sip.src feature tag.
        contact=NameAddr.parse(
            f"<sip:srs-call@{host}:{connection.local_port};transport={transport}>;+sip.src"
        ),
        reliable=connection.reliable,
    )


async def _talk(
    plan: CallPlan,
    identity: CallIdentity,
    offered: Sequence[OfferedTrack],
    signalling: Signalling,
    sockets: Sequence[RtpSocket],
    streams: Sequence[RtpStream | None],
    audio: Sequence[EncodedTrack | None],
) -> None:
    """Stream the audio; meanwhile hold, resume and update the metadata on schedule.  A
    BYE from the server stops everything."""
    on_hold = False
    loop = asyncio.get_running_loop()
    start = loop.time()

    async def at(offset_s: float) -> None:
        await asyncio.sleep(max(0.0, start + offset_s - loop.time()))

    async def reoffer(what: str, version: int, direction: Direction) -> None:
        sdp = offer_sdp(signalling.connection.local_host, offered,
                        session_id=identity.sdp_session_id, version=version,
                        codecs=plan.codecs, direction=direction)
        request, outputs = signalling.uac.request(
            "INVITE", now=loop.time(), body=sdp, content_type=SDP_TYPE
        )
        await signalling.transact(what, request, outputs, plan.answer_timeout_s)

    async def control() -> None:
        nonlocal on_hold
        events: list[tuple[float, str]] = []
        if plan.hold_at_s is not None:
            events += [(plan.hold_at_s, "hold"), (plan.hold_at_s + plan.hold_for_s, "resume")]
        if plan.metadata_update_at_s is not None:
            events.append((plan.metadata_update_at_s, "update"))
        version = 1
        for offset_s, what in sorted(events):
            await at(offset_s)
            if what == "hold":
                on_hold = True  # RFC 3264 §8.4: stop sending, then offer inactive
                version += 1
                await reoffer("re-INVITE (hold)", version, Direction.INACTIVE)
            elif what == "resume":
                version += 1
                await reoffer("re-INVITE (resume)", version, Direction.SENDONLY)
                on_hold = False
            else:
                # RFC 7866 §6.1.4 / RFC 3311: metadata-only UPDATE, a partial snapshot.
                xml = recording_metadata(identity, offered,
                                         {**plan.parameters, "metadata_update": "1"},
                                         partial=True)
                request, outputs = signalling.uac.request(
                    "UPDATE", now=loop.time(), body=xml, content_type=METADATA_TYPE
                )
                await signalling.transact("UPDATE (metadata)", request, outputs,
                                          plan.answer_timeout_s)

    media = asyncio.ensure_future(send_paced(
        [s.send for s in sockets], streams, audio, total_frames=plan.total_frames,
        loop=plan.duration_s is not None, paused=lambda: on_hold,
    ))
    controller = asyncio.ensure_future(control())
    ended = asyncio.ensure_future(signalling.remote_bye.wait())
    tasks = {media, controller, ended}
    try:
        while media in tasks and ended in tasks:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                tasks.discard(task)
                task.result()  # a CallFailed from the controller, or a bug, surfaces here
        if controller in tasks and ended in tasks:
            await controller  # an event scheduled after the audio still happens
            tasks.discard(controller)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
