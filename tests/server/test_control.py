"""The control channel on a real socket pair: framing, ordering, and what breaks it."""

from __future__ import annotations

import asyncio
import pickle
import socket
import struct

import pytest

from srs.server import control as c
from srs.sip.dialog import DialogId

DIALOG = DialogId("call@0.0.0.0", "local", "remote")


async def pair() -> tuple[c.Channel, socket.socket]:
    """A channel on one end; the raw other end, to write any bytes at all."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    theirs.setblocking(False)
    return await c.Channel.connect(ours), theirs


def frame(message: object) -> bytes:
    data = pickle.dumps(message)
    return struct.pack("!I", len(data)) + data


def test_messages_cut_anywhere_arrive_whole_and_in_order() -> None:
    async def run() -> list[c.Message]:
        channel, raw = await pair()
        first = await c.Channel.connect(raw)
        got: list[c.Message] = []
        messages = [c.Answered(n, DIALOG if n % 2 else None) for n in range(50)]
        for message in messages:
            first.send(message)
        hello = await channel.receive()  # before anyone listens: the queue
        got.append(hello)
        channel.listen(got.append)
        while len(got) < len(messages):
            await asyncio.sleep(0.01)
        first.close()
        assert await channel.wait_closed()
        return got

    got = asyncio.run(run())
    assert got == [c.Answered(n, DIALOG if n % 2 else None) for n in range(50)]


def test_a_message_is_handled_in_the_callback_that_read_it() -> None:
    """Two frames in one read: the first one's handler has run before the second one is
    handed over (an Answered must register its dialog before the UPDATE in it)."""
    async def run() -> list[str]:
        channel, raw = await pair()
        seen: list[str] = []

        def handle(message: c.Message) -> None:
            seen.append(type(message).__name__)
            if isinstance(message, c.Answered):
                asyncio.get_running_loop().call_soon(seen.append, "next iteration")

        channel.listen(handle)
        raw.send(frame(c.Answered(1, DIALOG)) + frame(c.End("bye", DIALOG, 1.0)))
        await asyncio.sleep(0.05)
        raw.close()
        await channel.wait_closed()
        return seen

    assert asyncio.run(run()) == ["Answered", "End", "next iteration"]


@pytest.mark.parametrize(("data", "why"), [
    (struct.pack("!I", c.MAX_FRAME_BYTES + 1), "control frame of"),
    (struct.pack("!I", 3) + b"\x80\x05x", "unreadable control frame"),
    (frame({"not": "a message"}), "not a control message: dict"),
])
def test_a_frame_that_is_not_a_message_closes_the_channel(data: bytes, why: str) -> None:
    async def run() -> tuple[str, list[c.Message]]:
        channel, raw = await pair()
        got: list[c.Message] = []
        channel.listen(got.append)
        raw.send(frame(c.Idle()) + data + frame(c.Idle()))
        reason = await asyncio.wait_for(channel.wait_closed(), 5)
        raw.close()
        return reason, got

    reason, got = asyncio.run(run())
    assert why in reason
    assert got == [c.Idle()]  # what came before is kept; nothing after it is read


def test_a_handler_that_raises_costs_only_its_message() -> None:
    async def run() -> tuple[list[c.Message], list[str]]:
        channel, raw = await pair()
        errors: list[str] = []
        asyncio.get_running_loop().set_exception_handler(
            lambda _loop, context: errors.append(context["message"]))
        got: list[c.Message] = []

        def handle(message: c.Message) -> None:
            if isinstance(message, c.Shutdown):
                raise RuntimeError("a bug")
            got.append(message)

        channel.listen(handle)
        raw.send(frame(c.Idle()) + frame(c.Shutdown()) + frame(c.Answered(7, None)))
        await asyncio.sleep(0.05)
        raw.close()
        await channel.wait_closed()
        return got, errors

    got, errors = asyncio.run(run())
    assert got == [c.Idle(), c.Answered(7, None)]
    assert errors == ["control message Shutdown failed"]


def test_receive_on_a_closed_channel_says_so() -> None:
    async def run() -> str:
        channel, raw = await pair()
        raw.close()
        with pytest.raises(c.ChannelClosed) as closed:
            await channel.receive()
        channel.send(c.Idle())  # dropped, not raised
        return str(closed.value)

    assert asyncio.run(run())
