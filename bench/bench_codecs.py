"""What each codec costs a media worker: CPU per stream-second of the tick's file work.

Run: ``.venv/bin/python bench/bench_codecs.py [streams] [seconds] [codec ...]`` (default 20
streams, 10 s, every codec whose test encoder runs here).  For each codec, real encoders
(tests/codecs/encoders.py) turn a 440 Hz + 3 kHz tone into 20 ms RTP payloads; the
benchmark then times ``StreamOutput.write`` -- decode, lay out, append, flush, exactly the
work a worker thread does once a tick per stream -- for ``streams`` files, one second of
packets per stream per call, and prints CPU per stream-second and the ratio to PCMU
measured in the same run.  Also: G.711 written into a 16 kHz file
(``recordings.sample_rate``), which adds the resampler.

No assertions: timing goals live here, not in tests (docs/architecture.md, "Hot path").
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from srs import codecs
from srs.codecs.g711 import pcmu_encode
from srs.recording.output import StreamOutput
from srs.rtp.track import Placed
from tests.codecs.encoders import RtpAudio, available, encode, tone

# (label, encoder name, options, a=fmtp parameters srs is told)
CODECS = [
    ("PCMU", "PCMU", {}, {}),
    ("G722", "G722", {}, {}),
    ("G729", "G729", {"annexb": False}, {}),
    ("GSM", "GSM", {}, {}),
    ("opus", "opus", {}, {}),
    ("AMR", "AMR", {"octet_align": True}, {"octet-align": "1"}),
    ("AMR-WB", "AMR-WB", {"octet_align": True}, {"octet-align": "1"}),
    ("speex", "speex", {}, {}),
    ("L16/16000", "L16", {}, {}),
]


def _pcmu(seconds: int) -> RtpAudio:
    law = pcmu_encode(tone([440.0, 3000.0], seconds, 8000))
    payloads = [law[i:i + 160] for i in range(0, len(law), 160)]
    return RtpAudio("PCMU", 8000, None, 8000, None, payloads,
                    [i * 160 for i in range(len(payloads))])


def _audio(name: str, options: dict[str, object], seconds: int) -> RtpAudio:
    if name == "PCMU":
        return _pcmu(seconds)
    rate = 16000 if name in ("G722", "AMR-WB", "L16") else 48000 if name == "opus" else 8000
    return encode(name, tone([440.0, 3000.0], seconds, rate), rate, **options)


def _cost(codec: codecs.Codec, audio: RtpAudio, streams: int, seconds: int,
          file_rate: int, root: Path) -> float:
    """CPU seconds per stream-second of StreamOutput.write."""
    clock = audio.clock_rate_hz
    per_second = len(audio.payloads) // seconds
    batches = [[Placed(ts, 96, p, 1, ts) for ts, p in
                zip(audio.timestamps[s * per_second:(s + 1) * per_second],
                    audio.payloads[s * per_second:(s + 1) * per_second], strict=True)]
               for s in range(seconds)]
    outputs = [StreamOutput(root / f"{i}.wav", {96: codec}, clock, file_rate)
               for i in range(streams)]
    cpu = time.thread_time()
    for second, batch in enumerate(batches):
        horizon = (second + 1) * clock
        for output in outputs:
            output.write(batch, horizon, horizon)
    cpu = time.thread_time() - cpu
    for output in outputs:
        output.finish(seconds * clock)
    for path in root.glob("*.wav"):
        path.unlink()
    return cpu / (streams * seconds)


def main() -> None:
    streams = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    seconds = int(sys.argv[2]) if len(sys.argv) > 2 else 10
    wanted = set(sys.argv[3:])
    print(f"{streams} streams x {seconds} s, Python {sys.version.split()[0]}; "
          "StreamOutput.write CPU per stream-second:")
    base: float | None = None
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        rows = [*CODECS, ("PCMU into 16 kHz", "PCMU", {}, {})]
        for label, name, options, params in rows:
            if wanted and label not in wanted and name not in wanted:
                continue
            reason = None if name == "PCMU" else available(name, **options)
            if reason is not None:
                print(f"{label:<18} skipped: {reason}")
                continue
            audio = _audio(name, options, seconds)
            codec = codecs.lookup(audio.encoding_name, audio.clock_rate_hz, audio.channels)
            if codec is None:
                print(f"{label:<18} skipped: srs does not decode it here")
                continue
            codec = codec.with_fmtp(params)
            file_rate = 16000 if label == "PCMU into 16 kHz" else codec.sample_rate_hz
            cost = _cost(codec, audio, streams, seconds, file_rate, root)
            if label == "PCMU":
                base = cost
            ratio = f"{cost / base:5.1f}x PCMU" if base else ""
            print(f"{label:<18} {cost * 1e6:8.1f} us CPU  {ratio}")


if __name__ == "__main__":
    main()
