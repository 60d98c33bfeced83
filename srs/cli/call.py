"""``srs call``: place SIPREC recording calls at a recording server, shaped like Twilio's.

The protocol work is in :mod:`srs.client`; this module turns the command line into a
:class:`~srs.client.call.CallPlan`, runs the calls and prints what the server answered.
Exit codes: 0 every call succeeded, 1 at least one failed, 2 bad arguments or files.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import ssl
import sys
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TextIO, TypeVar

from srs.client.call import CallPlan, CallResult, Target
from srs.client.encode import available, send_codec
from srs.client.load import Progress, run_calls
from srs.client.media import PACKET_INTERVAL_S, read_track, tone
from srs.client.offer import srtp_suite
from srs.errors import SipParseError, UsageError
from srs.sip.headers import is_token
from srs.sip.uri import SipUri

HELP = "place SIPREC recording calls at a server (a Twilio-shaped test and load client)"

TOKEN_ENV = "SRS_CALL_TOKEN"  # noqa: S105 - the name of the variable, not a token
DEFAULT_LABELS = ("inbound", "outbound")  # Twilio's two forks (INTEROP.md)
DEFAULT_TONES_HZ = (440.0, 1000.0)
DEFAULT_TONE_S = 5.0
DEFAULT_AORS = ("sip:+15005550006@example.com", "sip:+15005550001@example.com")
DEFAULT_SRTP = "AES_CM_128_HMAC_SHA1_80"
MAX_TRACKS = 16
PROGRESS_INTERVAL_S = 0.5

__all__ = ["HELP", "TOKEN_ENV", "add_arguments", "add_connection_arguments", "credential",
           "build_plan", "run", "run_loop", "tls_context"]

_T = TypeVar("_T")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", metavar="URI",
                        help="the recording server: sip:HOST[:PORT][;transport=tcp|tls] "
                             "or sips:HOST[:PORT]")
    add_connection_arguments(parser)
    parser.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                        help="custom parameter, sent as header X-NAME and as metadata "
                             "<Parameter>; repeatable")
    parser.add_argument("--track", action="append", type=Path, default=[], metavar="FILE",
                        help="audio file for one stream, any rate (resampled to each "
                             "codec's); "
                             "repeatable (default: 440 Hz and 1000 Hz tones, 5 s)")
    parser.add_argument("--label", action="append", default=[],
                        help="a=label of each stream in order (default: inbound, outbound, "
                             "track-3 ...)")
    parser.add_argument("--aor", action="append", default=[], metavar="URI",
                        help="AOR of the participant sending each stream, in order")
    parser.add_argument("--srtp", nargs="?", const=DEFAULT_SRTP, metavar="SUITE",
                        help=f"offer RTP/SAVP with SDES keys (default suite {DEFAULT_SRTP})")
    parser.add_argument("--codec", action="append", choices=available(), default=[],
                        help="codec(s) to offer, in preference order (default: PCMU PCMA)")
    parser.add_argument("--duration", type=float, metavar="S",
                        help="call length in seconds; tracks repeat (default: longest track)")
    parser.add_argument("--calls", type=int, default=1, metavar="N", help="number of calls")
    parser.add_argument("--rate", type=float, default=1.0, metavar="R",
                        help="new calls per second (default 1)")
    parser.add_argument("--concurrency", type=int, default=100, metavar="C",
                        help="most calls active at once (default 100)")
    parser.add_argument("--hold-at", type=float, metavar="S",
                        help="at S seconds re-INVITE with a=inactive (hold)")
    parser.add_argument("--hold-for", type=float, default=2.0, metavar="S",
                        help="seconds on hold before resuming (default 2)")
    parser.add_argument("--metadata-update-at", type=float, metavar="S",
                        help="at S seconds send a metadata-only UPDATE (partial)")
    parser.add_argument("--progress", action="store_true",
                        help="show a progress line on stderr even when it is not a terminal")
    parser.add_argument("-q", "--quiet", action="store_true",
                        help="print only failures and the summary")


def add_connection_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """How to reach and authenticate to the server: shared with ``srs replay --target``."""
    parser.add_argument("--transport", choices=("udp", "tcp", "tls"),
                        help="override the URI's transport (default: udp; tls for sips:)")
    parser.add_argument("--insecure", action="store_true",
                        help="TLS: do not verify the server certificate (self-signed test servers)")
    parser.add_argument("--ca", type=Path, metavar="FILE",
                        help="TLS: PEM bundle to verify the server certificate with")
    parser.add_argument("--token",
                        help=f"credential value (default: ${TOKEN_ENV}; none: no header)")
    parser.add_argument("--auth-header", default="X-Auth-Token", metavar="NAME",
                        help="credentials header name (default: X-Auth-Token)")


def credential(args: argparse.Namespace) -> tuple[str, str] | None:
    """(header name, value) from ``--auth-header`` and ``--token`` or $SRS_CALL_TOKEN;
    None without a token.  Raises ``UsageError`` for a bad name or a multi-line value."""
    token = args.token if args.token is not None else os.environ.get(TOKEN_ENV)
    if not is_token(args.auth_header):
        raise UsageError(f"--auth-header is not a header name: {args.auth_header!r}")
    if token is not None and any(ch in token for ch in "\r\n\0"):
        raise UsageError("the token must be one line")
    return (args.auth_header, token) if token else None


def _parameters(pairs: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs:
        name, eq, value = pair.partition("=")
        if not eq or not is_token(name):
            raise UsageError(f"--param wants NAME=VALUE with a token NAME: {pair!r}")
        if any(ch in value for ch in "\r\n\0"):
            raise UsageError(f"--param {name}: the value must be one line")
        out[name] = value
    return out


def build_plan(args: argparse.Namespace) -> CallPlan:
    """The plan from the command line.  Raises ``UsageError`` naming the bad option."""
    target = Target.parse(args.target, args.transport)
    codecs = tuple(dict.fromkeys(args.codec)) or ("PCMU", "PCMA")
    rate_hz = max(send_codec(c).sample_rate_hz for c in codecs)
    if args.track:
        tracks = tuple(read_track(path, rate_hz) for path in args.track)
    else:
        tracks = tuple(tone(freq, DEFAULT_TONE_S, rate_hz=rate_hz) for freq in DEFAULT_TONES_HZ)
    if len(tracks) > MAX_TRACKS:
        raise UsageError(f"at most {MAX_TRACKS} tracks")
    labels = tuple(args.label) + tuple(
        DEFAULT_LABELS[i] if i < len(DEFAULT_LABELS) else f"track-{i + 1}"
        for i in range(len(args.label), len(tracks))
    )
    if len(labels) != len(tracks) or len(set(labels)) != len(labels):
        raise UsageError("--label: one distinct label per track")
    aors = tuple(args.aor) + tuple(
        DEFAULT_AORS[i] if i < len(DEFAULT_AORS) else f"sip:participant-{i + 1}@example.com"
        for i in range(len(args.aor), len(tracks))
    )
    if len(aors) != len(tracks):
        raise UsageError("--aor: one AOR per track at most")
    for aor in aors:
        try:
            SipUri.parse(aor)
        except SipParseError:
            raise UsageError(f"--aor is not a sip: URI: {aor!r}") from None
    plan = CallPlan(
        target=target,
        labels=labels,
        tracks=tracks,
        aors=aors,
        credential=credential(args),
        parameters=_parameters(args.param),
        srtp=srtp_suite(args.srtp) if args.srtp else None,
        codecs=codecs,
        track_rate_hz=rate_hz,
        duration_s=args.duration,
        hold_at_s=args.hold_at,
        hold_for_s=args.hold_for,
        metadata_update_at_s=args.metadata_update_at,
        ssl_context=tls_context(args) if target.transport == "tls" else None,
    )
    _check_schedule(plan)
    for codec in codecs:  # encoded before the first call, once for every call
        plan.encoded(codec)
    return plan


def _check_schedule(plan: CallPlan) -> None:
    if plan.duration_s is not None and plan.duration_s <= 0:
        raise UsageError("--duration must be positive")
    length_s = plan.total_frames * PACKET_INTERVAL_S
    if plan.hold_at_s is not None:
        if plan.hold_at_s < 0 or plan.hold_for_s <= 0:
            raise UsageError("--hold-at must be >= 0 and --hold-for positive")
        if plan.hold_at_s + plan.hold_for_s >= length_s:
            raise UsageError(f"hold and resume must fall within the call ({length_s:g} s)")
    update = plan.metadata_update_at_s
    if update is not None and not 0 <= update < length_s:
        raise UsageError(f"--metadata-update-at must fall within the call ({length_s:g} s)")


def tls_context(args: argparse.Namespace) -> ssl.SSLContext:
    if args.insecure and args.ca:
        raise UsageError("--insecure and --ca exclude each other")
    try:
        context = ssl.create_default_context(cafile=str(args.ca) if args.ca else None)
    except (OSError, ssl.SSLError) as exc:
        raise UsageError(f"--ca {args.ca}: {exc}") from None
    if args.insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


class _Console:
    """Step lines on stdout, failures on stderr, and one progress line on stderr that is
    redrawn at most every PROGRESS_INTERVAL_S."""

    def __init__(self, *, quiet: bool, progress: bool, out: TextIO, err: TextIO) -> None:
        self.quiet = quiet
        self.progress = progress
        self.out = out
        self.err = err
        self._drawn = False
        self._last = 0.0

    def say(self, number: int, line: str) -> None:
        if not self.quiet:
            self._clear()
            print(f"call {number}: {line}", file=self.out, flush=True)

    def show(self, progress: Progress, *, force: bool = False) -> None:
        now = time.monotonic()
        if not self.progress or (not force and now - self._last < PROGRESS_INTERVAL_S):
            return
        self._last = now
        self.err.write(f"\r{progress}\x1b[K")
        self.err.flush()
        self._drawn = True

    def _clear(self) -> None:
        if self._drawn:
            self.err.write("\r\x1b[K")
            self.err.flush()
            self._drawn = False

    def finish_progress(self) -> None:
        """Leave the last progress line on screen."""
        if self._drawn:
            self.err.write("\n")
            self.err.flush()
            self._drawn = False

    def summary(self, results: list[CallResult]) -> None:
        self._clear()
        for result in results:
            if not result.ok:
                print(f"srs call: call {result.number} failed: {result.error} "
                      f"(Call-ID {result.call_id})", file=self.err)
        failed = sum(1 for r in results if not r.ok)
        print(f"srs call: {len(results)} call(s): {len(results) - failed} ok, {failed} failed",
              file=self.out, flush=True)


def run(args: argparse.Namespace) -> int:
    try:
        plan = build_plan(args)
    except UsageError as exc:
        print(f"srs call: {exc}", file=sys.stderr)
        return 2
    if args.calls < 1 or args.rate <= 0 or args.concurrency < 1:
        print("srs call: --calls, --rate and --concurrency must be positive", file=sys.stderr)
        return 2
    console = _Console(quiet=args.quiet, progress=args.progress or sys.stderr.isatty(),
                       out=sys.stdout, err=sys.stderr)
    last: list[Progress] = []

    def progress(state: Progress) -> None:
        last[:] = [state]
        console.show(state)

    async def main() -> list[CallResult]:
        return await run_calls(plan, calls=args.calls, rate_per_s=args.rate,
                               concurrency=args.concurrency, say=console.say,
                               progress=progress)

    try:
        results = run_loop(main)
    except KeyboardInterrupt:
        print("\nsrs call: interrupted", file=sys.stderr)
        return 1
    if last and console.progress:
        console.show(last[0], force=True)
        console.finish_progress()
    console.summary(results)
    return 0 if results and all(r.ok for r in results) else 1


def run_loop(main: Callable[[], Coroutine[Any, Any, _T]]) -> _T:
    """Run ``main`` on uvloop when installed (several times cheaper per packet, see
    docs/architecture.md, "Hot path"), else on asyncio's own loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main())
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main())
