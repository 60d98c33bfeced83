"""Custom-parameter flattening against the number of values under one key.

Run: ``.venv/bin/python bench/bench_metadata.py [n]`` (default 20000).  Flattens ``n`` and
``2n`` extension elements that all carry the same ``name`` (each repetition gets the next
``#k``), best of three, and prints the time of each and their ratio: about 2 when the
work is linear in the values, about 4 when it is quadratic (one lookup per earlier
repetition, as before :class:`srs.siprec.metadata.CustomParameters`).  Also the time of a
whole metadata state: a document's worth of partial updates, then the flattened
parameters read 1,000 times, as the sidecar does at each write.  No assertions.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from timing import best_of

from srs.siprec.metadata import CustomParameters, ExtensionElement, RecordingMetadata
from srs.siprec.metadata_state import MetadataState
from tests.siprec.documents import partial_with_extensions


def same_key(n: int) -> list[ExtensionElement]:
    return [ExtensionElement("urn:x", "p", attributes=(("name", "k"), ("value", str(i))))
            for i in range(n)]


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
    one, two = same_key(n), same_key(2 * n)
    t1 = best_of(3, lambda: CustomParameters.flatten(one))
    t2 = best_of(3, lambda: CustomParameters.flatten(two))
    print(f"flatten {n:>7} same-key values: {t1 * 1000:8.1f} ms")
    print(f"flatten {2 * n:>7} same-key values: {t2 * 1000:8.1f} ms")
    print(f"ratio 2n/n: {t2 / t1:.2f} (2 = linear, 4 = quadratic)")
    updates = [RecordingMetadata.parse(partial_with_extensions(first)) for first in (0, 10)]

    def session() -> None:
        state = MetadataState()
        for update in updates:
            state = state.apply(update)
        for _ in range(1000):
            state.custom_parameters()

    print(f"2 partial updates of 900 values, then 1,000 reads: "
          f"{best_of(3, session) * 1000:.1f} ms")


if __name__ == "__main__":
    main()
