"""The recording sessions of a running server: the asyncio driver of the recording core.

:class:`LiveRecorder` feeds the UAS core's session events to the pure
:class:`~srs.recording.core.Recorder` and executes what it returns: port requests go to
:class:`~srs.server.media.SocketMedia`, file jobs to a worker thread (blocking file I/O
never runs on the event loop), SIP outputs back to the application, log events to the
logger, and finished sessions to the metrics and the completion webhook.  The core's
ticks are served by one ``call_at`` handle, re-armed after every input.  Every task is
kept and awaited on shutdown; none is fire-and-forget.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, assert_never

from srs.log import log_entry
from srs.ops.metrics import Metrics
from srs.ops.retention import directory_bytes
from srs.ops.webhook import WebhookSender
from srs.recording.core import Recorder
from srs.recording.outputs import (
    Attach,
    Finished,
    Log,
    OpenPorts,
    Output,
    Rejected,
    Release,
    Request,
    Started,
)
from srs.server.media import SocketMedia
from srs.server.timer import CoreTimer
from srs.sip.routing import PeerLike
from srs.sip.uas import Local, NewSession, SessionEnded, SessionUpdate
from srs.sip.uas import Output as SipOutput

__all__ = ["LiveRecorder", "SHUTDOWN_WAIT_S"]

# How long shutdown waits for sessions that are finishing.
SHUTDOWN_WAIT_S = 30.0


class LiveRecorder:
    def __init__(
        self,
        recorder: Recorder,
        *,
        media: SocketMedia,
        transmit: Callable[[list[SipOutput]], None],
        local_for: Callable[[PeerLike], Local],
        media_address_for: Callable[[PeerLike], str],
        clock: Callable[[], float],
        log: Any,
        metrics: Metrics | None = None,
        webhook: WebhookSender | None = None,
    ) -> None:
        self.recorder = recorder
        self.media = media
        self.transmit = transmit
        self.local_for = local_for
        self.media_address_for = media_address_for
        self.clock = clock
        self.log = log
        self.metrics = metrics
        self.webhook = webhook
        self.tasks: set[asyncio.Task[None]] = set()
        self._loop = asyncio.get_running_loop()
        self._timer = CoreTimer(recorder.next_timer, self._fire_timer)

    def dispatch(self, event: NewSession | SessionUpdate | SessionEnded) -> None:
        """A session event of the UAS core."""
        if isinstance(event, NewSession):
            peer = event.peer
            self.execute(self.recorder.receive(event, self.clock(), local=self.local_for(peer),
                                               media_address=self.media_address_for(peer)))
        else:
            self.execute(self.recorder.receive(event, self.clock()))

    def execute(self, outputs: Iterable[Output]) -> None:
        sip: list[SipOutput] = []
        try:
            for output in outputs:
                if isinstance(output, Request):
                    self._keep(self._serve(output))
                elif isinstance(output, Attach):
                    self.media.attach(output.port, output.stream)
                elif isinstance(output, Release):
                    self.media.close(list(output.ports))
                elif isinstance(output, Log):
                    log_entry(self.log, output)
                elif isinstance(output, Rejected):
                    if self.metrics is not None:
                        self.metrics.session_rejected(output.reason)
                elif isinstance(output, Started):
                    if self.metrics is not None:
                        self.metrics.session_started()
                elif isinstance(output, Finished):
                    self._keep(self._finished(output))
                elif isinstance(output, SipOutput):
                    sip.append(output)  # the SIP core's own outputs
                else:
                    assert_never(output)
            if sip:
                self.transmit(sip)
        finally:
            self._timer.arm()  # the core's next tick, whatever happened above

    async def shutdown(self) -> None:
        """Stop taking sessions; BYE and finalise every active one, and let sessions that
        were already finishing complete their files rather than cutting them half way.
        Whatever sending the BYEs does, the sessions' file work still runs to its end."""
        try:
            self.execute(self.recorder.shutdown(self.clock()))
        finally:
            await self._drain()

    async def _drain(self) -> None:
        deadline = self._loop.time() + SHUTDOWN_WAIT_S
        while (self.tasks or not self.recorder.idle) and self._loop.time() < deadline:
            if self.tasks:
                await asyncio.wait(list(self.tasks), timeout=deadline - self._loop.time(),
                                   return_when=asyncio.FIRST_COMPLETED)
            else:
                await asyncio.sleep(0.01)  # a session between two requests
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        self._timer.cancel()

    # -- requests -----------------------------------------------------------------------

    async def _serve(self, request: Request) -> None:
        work = request.work
        result: Any = None
        error: Exception | None = None
        try:
            if isinstance(work, OpenPorts):
                result = await self.media.open(work.count, work.near)
            else:
                result = await asyncio.to_thread(work.run)
        except Exception as exc:  # handed to the core, which classifies it
            error = exc
        self.execute(self.recorder.complete(request.id, result, error, self.clock()))

    async def _finished(self, finished: Finished) -> None:
        directory = Path(finished.directory)
        if self.metrics is not None:
            written = await asyncio.to_thread(directory_bytes, directory)
            self.metrics.session_finished(finished.status.value, finished.streams, written)
        if self.webhook is not None:
            await self.webhook.submit(directory)

    def _keep(self, coro: Any) -> None:
        task = self._loop.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.log.error("task_failed", exc_info=task.exception())

    # -- the core's timer ----------------------------------------------------------------

    def _fire_timer(self) -> None:
        self.execute(self.recorder.handle_timer(self.clock()))
