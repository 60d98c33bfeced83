"""RFC 7865 documents built for size: shared by tests and bench/bench_metadata.py."""

from __future__ import annotations

__all__ = ["partial_with_extensions"]


def partial_with_extensions(first: int, participants: int = 10, per: int = 90) -> bytes:
    """A partial update naming participants ``p<first>``... each with ``per`` extension
    elements ``<x:p name="k" value="<i>.<j>"/>`` (all under one key)."""
    people = "".join(
        f'<participant participant_id="p{i}"><nameID aor="sip:u{i}@x"/>'
        + "".join(f'<x:p name="k" value="{i}.{j}"/>' for j in range(per)) + "</participant>"
        for i in range(first, first + participants))
    return (b'<recording xmlns="urn:ietf:params:xml:ns:recording:1" xmlns:x="urn:x">'
            b"<datamode>partial</datamode>" + people.encode() + b"</recording>")
