"""A host for the recording core in tests: a fake clock, real files, requests on demand.

:class:`CoreHost` wires a real :class:`~srs.sip.uas.SipCore` to a real
:class:`~srs.recording.core.Recorder` in memory.  SIP requests are built as a recording
client sends them and fed with ``now``; the core's requests are served inline (ports are
numbers, file jobs run for real under ``tmp_path``) unless a test holds them back
(``hold=True``) or makes one fail (``fail_job``), so orderings and failure paths can be
driven deterministically.  No sockets, no event loop, no sleeping.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from srs.recording import jobs
from srs.recording.core import Recorder
from srs.recording.outputs import (
    Answer,
    Attach,
    Drain,
    EndLive,
    Fail,
    Finished,
    HangUp,
    Log,
    OpenPorts,
    Reject,
    Rejected,
    Release,
    Request,
    Started,
    StartLive,
    WaitLive,
)
from srs.recording.policy import RecorderConfig
from srs.recording.signalling import answer, signal
from srs.recording.stream import StreamState
from srs.sip.auth import Authenticator
from srs.sip.message import SipRequest, SipResponse
from srs.sip.parser import parse_message
from srs.sip.transaction import Source
from srs.sip.uas import Local, NewSession, SessionEnded, SessionUpdate, SipCore, Transmit
from tests.sipclient import metadata, multipart, sdp_offer

PEER = Source("udp", "192.0.2.10", 5070)
LOCAL = Local("127.0.0.1", 5060, "udp")


@dataclass
class Dialog:
    call_id: str
    from_tag: str
    to_tag: str | None = None
    cseq: int = 1
    invite_branch: str = ""


@dataclass
class CoreHost:
    directory: Path
    config_overrides: dict[str, Any] = field(default_factory=dict)
    now: float = 1000.0
    hold: bool = False
    fail_job: Callable[[Any], BaseException | None] = lambda job: None
    on_live: Callable[[Any], None] | None = None  # StartLive and EndLive, as they come

    def __post_init__(self) -> None:
        self.sip = SipCore(authenticator=Authenticator.from_strings("X-Auth-Token", ()))
        config = RecorderConfig(recordings_dir=self.directory, **self.config_overrides)
        self.recorder = Recorder(config, epoch_offset_s=1_700_000_000.0)
        self.sent: list[SipResponse | SipRequest] = []  # what srs put on the wire
        self.logs: list[Log] = []
        self.events: list[Any] = []  # Rejected, Started, Finished, Release
        self.streams: dict[int, StreamState] = {}  # attached, by port
        self.held: list[Request] = []
        self.jobs: list[Any] = []  # every file job the core asked for, in order
        self._next_port = 20000

    # -- driving ------------------------------------------------------------------------

    def advance(self, seconds: float) -> None:
        """Move the clock, running every recording tick and SIP timer due on the way."""
        target = self.now + seconds
        while True:
            due = [t for t in (self.recorder.next_timer(), self.sip.next_timer())
                   if t is not None and t <= target]
            if not due:
                break
            self.now = max(self.now, min(due))
            tick = self.recorder.next_timer()
            if tick is not None and tick <= self.now:
                self.execute(self.recorder.handle_timer(self.now))
            else:
                self.execute(self.sip.handle_timer(self.now))
        self.now = target

    def release(self, count: int | None = None) -> None:
        """Serve held requests (all, or the first ``count``)."""
        for _ in range(len(self.held) if count is None else count):
            self.execute(self._serve(self.held.pop(0)))

    def execute(self, outputs: Sequence[Any]) -> None:
        for output in outputs:
            if isinstance(output, Request):
                if self.hold and not isinstance(output.work, Drain | Answer):
                    self.held.append(output)
                else:
                    self.execute(self._serve(output))
            elif isinstance(output, Transmit):
                self.sent.append(parse_message(output.data))
            elif isinstance(output, NewSession):
                self.execute(self.recorder.receive(output, self.now, local=LOCAL,
                                                   media_address="127.0.0.1"))
            elif isinstance(output, SessionUpdate | SessionEnded):
                self.execute(self.recorder.receive(output, self.now))
            elif isinstance(output, Attach):
                self.streams[output.port] = output.stream
            elif isinstance(output, Release):
                for port in output.ports:
                    self.streams.pop(port, None)
                self.events.append(output)
            elif isinstance(output, Reject | Fail | HangUp):
                self.execute(signal(self.sip, output, self.now))
            elif isinstance(output, Log):
                self.logs.append(output)
            elif isinstance(output, Rejected | Started | Finished | StartLive | EndLive):
                self.events.append(output)
                if self.on_live is not None and isinstance(output, StartLive | EndLive):
                    self.on_live(output)

    def _serve(self, request: Request) -> list[Any]:
        work = request.work
        if isinstance(work, OpenPorts):
            ports = list(range(self._next_port, self._next_port + 2 * work.count, 2))
            self._next_port += 2 * work.count
            return self.recorder.complete(request.id, ports, None, self.now)
        if isinstance(work, Drain):
            return self.recorder.complete(request.id, 0, None, self.now)
        if isinstance(work, Answer):
            sent, dialog_id = answer(self.sip, work, self.now)
            return [*sent, *self.recorder.complete(request.id, dialog_id, None, self.now)]
        self.jobs.append(work)
        if isinstance(work, WaitLive):  # nothing streamed here: done at once
            return self.recorder.complete(request.id, None, None, self.now)
        injected = self.fail_job(work)
        if injected is not None:
            return self.recorder.complete(request.id, None, injected, self.now)
        try:
            result = work.run()
        except Exception as exc:
            return self.recorder.complete(request.id, None, exc, self.now)
        return self.recorder.complete(request.id, result, None, self.now)

    # -- the recording client's side -------------------------------------------------------

    def request(self, method: str, dialog: Dialog, *, body: bytes = b"",
                content_type: str | None = None, cseq: int | None = None) -> SipRequest:
        branch = "z9hG4bK" + uuid.uuid4().hex[:16]
        if method == "INVITE" and dialog.to_tag is None:
            dialog.invite_branch = branch
        elif method == "CANCEL":
            branch = dialog.invite_branch  # RFC 3261 §9.1: the INVITE's branch
        to = "<sip:srs@127.0.0.1>" + (f";tag={dialog.to_tag}" if dialog.to_tag else "")
        lines = [
            f"{method} sip:srs@127.0.0.1:5060 SIP/2.0",
            f"Via: SIP/2.0/UDP {PEER.host}:{PEER.port};branch={branch}",
            "Max-Forwards: 70",
            f"From: <sip:src@example.com>;tag={dialog.from_tag}",
            f"To: {to}",
            f"Call-ID: {dialog.call_id}",
            f"CSeq: {cseq if cseq is not None else dialog.cseq} {method}",
            f"Contact: <sip:src@{PEER.host}:{PEER.port}>;+sip.src",
        ]
        if method == "INVITE" and dialog.to_tag is None:
            lines.append("Require: siprec")
        if content_type:
            lines.append(f"Content-Type: {content_type}")
        lines.append(f"Content-Length: {len(body)}")
        message = parse_message(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        assert isinstance(message, SipRequest)
        self.execute(self.sip.receive(message, PEER, self.now))
        return message

    def invite(self, labels: Sequence[str] = ("inbound", "outbound"), *,
               sdp: str | None = None, with_metadata: bool = True, ack: bool = True) -> Dialog:
        dialog = Dialog(uuid.uuid4().hex, uuid.uuid4().hex[:8])
        offer = sdp or sdp_offer([40000 + 2 * i for i in range(len(labels))], list(labels))
        content_type, body = multipart(offer, metadata(list(labels)) if with_metadata else None)
        self.request("INVITE", dialog, body=body, content_type=content_type)
        final = self.final_for(dialog, "INVITE")
        if final is not None and final.status == 200:
            dialog.to_tag = final.to.tag
            if ack:
                self.request("ACK", dialog)
        return dialog

    def reinvite(self, dialog: Dialog, sdp: str, *, method: str = "INVITE") -> SipResponse:
        dialog.cseq += 1
        content_type, body = multipart(sdp, None)
        self.request(method, dialog, body=body, content_type=content_type)
        final = self.final_for(dialog, method)
        assert final is not None
        if method == "INVITE" and final.status == 200:
            self.request("ACK", dialog)
        return final

    def bye(self, dialog: Dialog) -> None:
        dialog.cseq += 1
        self.request("BYE", dialog)

    def final_for(self, dialog: Dialog, method: str) -> SipResponse | None:
        """srs's last final response to ``method`` in ``dialog``, or None."""
        for message in reversed(self.sent):
            if (isinstance(message, SipResponse) and message.call_id == dialog.call_id
                    and message.cseq.method == method and message.status >= 200):
                return message
        return None

    def requests_sent(self, method: str) -> list[SipRequest]:
        return [m for m in self.sent if isinstance(m, SipRequest) and m.method == method]

    def byes(self) -> list[str]:
        """srs's BYE transactions (a UDP retransmission is the same one), by branch."""
        branches = []
        for bye in self.requests_sent("BYE"):
            if bye.top_via.branch not in branches:
                branches.append(bye.top_via.branch)
        return branches

    def finished(self) -> list[Finished]:
        return [e for e in self.events if isinstance(e, Finished)]

    def log_events(self) -> list[str]:
        return [entry.event for entry in self.logs]

    def sessions(self) -> list[Path]:
        return sorted(p.parent for p in self.directory.glob("*/*/*/*/session.json"))

    def stream(self, index: int) -> StreamState:
        [stream] = [s for s in self.streams.values() if s.index == index]
        return stream


def job_kinds(host: CoreHost) -> list[str]:
    return [type(job).__name__ for job in host.jobs]


__all__ = ["CoreHost", "Dialog", "PEER", "job_kinds", "jobs"]
