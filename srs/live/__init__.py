"""Live audio out: each recording session's tracks streamed as they arrive.

Beside the file path, never in it (docs/architecture.md, "Live audio out"): a
:class:`~srs.live.feed.SessionFeed` peeks at what the timeline placed (the same payloads
the files get, decoded again on the event loop), :mod:`srs.live.formats` turns 20 ms
chunks into Twilio Media Streams events or L16 frames, and :mod:`srs.live.push` sends
them to each configured WebSocket consumer over a bounded queue that drops the oldest
audio rather than wait.  ``urls``, ``formats`` and ``feed`` are pure; ``push`` and
``streams`` are the asyncio shell.
"""
