"""``srs replay``: record the SIPREC sessions of a packet capture (``--out``), or re-send
them to a running SRS (``--target``).

Exit codes: 0 every session replayed; 1 at least one live session failed; 2 bad arguments,
a file that is not a capture, or (with ``--target``) a capture without a SIPREC session.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from srs.capture import CaptureFormatError
from srs.cli.call import add_connection_arguments
from srs.log import configure_logging

if TYPE_CHECKING:  # imported when the command runs: `srs --help` stays quick
    from srs.replay.offline import Progress

HELP = ("record the SIPREC sessions of a pcap/pcapng capture offline (--out DIR) "
        "or re-send them to a running SRS (--target URI)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("capture", type=Path, help="pcap or pcapng file")
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--out", type=Path,
                      help="directory to write the recordings into (created if missing)")
    mode.add_argument("--target", metavar="URI",
                      help="re-send each session live to this recording server: "
                           "sip:HOST[:PORT][;transport=tcp|tls] or sips:HOST[:PORT]")
    parser.add_argument("--progress", action="store_true",
                        help="--out: show a progress bar even when stderr is not a terminal")
    live = parser.add_argument_group("live replay (--target)")
    live.add_argument("--speed", type=float, default=1.0, metavar="X",
                      help="play X times faster than captured (default 1: real time)")
    live.add_argument("--concurrency", type=int, default=100, metavar="C",
                      help="most sessions active at once (default 100)")
    add_connection_arguments(live)  # --token replaces the captured credential
    live.add_argument("-v", "--verbose", action="store_true",
                      help="print every step of every session, not only its outcome")


def _progress_bar(enabled: bool) -> Progress | None:
    if not enabled:
        return None

    def show(offset: int, total: int | None) -> None:
        if total:
            filled = int(30 * offset / total)
            print(f"\r[{'#' * filled}{'.' * (30 - filled)}] {100 * offset // total:3d}% "
                  f"{offset // 1_000_000} of {total // 1_000_000} MB", end="", file=sys.stderr,
                  flush=True)

    return show


def run(args: argparse.Namespace) -> int:
    configure_logging("warning", "console", stream=sys.stderr)
    if not args.capture.is_file():
        print(f"srs replay: {args.capture}: no such file", file=sys.stderr)
        return 2
    if args.target is not None:
        return _run_live(args)
    from srs.replay.offline import replay_capture

    progress = _progress_bar(args.progress or sys.stderr.isatty())
    try:
        report = replay_capture(args.capture, args.out, progress=progress)
    except CaptureFormatError as exc:
        if progress is not None:
            print(file=sys.stderr)
        print(f"srs replay: {exc}", file=sys.stderr)
        return 2
    if progress is not None:
        print(file=sys.stderr)
    print(f"srs replay: {report.packets} packets, {report.sip_messages} SIP messages, "
          f"{report.rtp_packets} RTP packets ({report.unmatched_rtp} not in a session), "
          f"{len(report.sessions)} session(s)")
    for directory in report.sessions:
        print(f"  {directory}")
    return 0


def _run_live(args: argparse.Namespace) -> int:
    from srs.cli.call import credential, run_loop, tls_context
    from srs.client.call import Target
    from srs.errors import UsageError
    from srs.replay.plan import plan_capture
    from srs.replay.sender import ReplayOptions, ReplayResult, replay_live

    try:
        target = Target.parse(args.target, args.transport)
        options = ReplayOptions(
            target=target,
            credential=credential(args),
            credential_header=args.auth_header,
            speed=args.speed,
            concurrency=args.concurrency,
            ssl_context=tls_context(args) if target.transport == "tls" else None,
        )
    except UsageError as exc:
        print(f"srs replay: {exc}", file=sys.stderr)
        return 2
    try:
        plan = plan_capture(args.capture)
    except CaptureFormatError as exc:
        print(f"srs replay: {exc}", file=sys.stderr)
        return 2
    for call_id in plan.unanswered:
        print(f"srs replay: skipped {call_id}: the recorder never answered its INVITE 2xx "
              f"in the capture", file=sys.stderr)
    if not plan.sessions:
        print(f"srs replay: {args.capture}: no SIPREC session to replay (no INVITE with "
              f"Require: siprec, a +sip.src Contact or recording metadata, answered 2xx, "
              f"among {plan.packets} packets)", file=sys.stderr)
        return 2
    print(f"srs replay: {len(plan.sessions)} session(s) to {target.uri} "
          f"at {args.speed:g}x", flush=True)

    def say(call_id: str, line: str) -> None:
        if args.verbose:
            print(f"{call_id}: {line}", flush=True)

    def done(result: ReplayResult) -> None:
        outcome = "ok" if result.ok else f"failed: {result.error}"
        print(f"{result.original_call_id} -> {result.call_id}: {outcome}, "
              f"{result.packets_sent}/{result.packets_planned} packets sent",
              file=sys.stdout if result.ok else sys.stderr, flush=True)

    async def main() -> list[ReplayResult]:
        return await replay_live(plan, options, say, done)

    try:
        results = run_loop(main)
    except KeyboardInterrupt:
        print("\nsrs replay: interrupted", file=sys.stderr)
        return 1
    failed = sum(1 for r in results if not r.ok)
    print(f"srs replay: {len(results)} session(s): {len(results) - failed} ok, {failed} failed",
          flush=True)
    return 0 if failed == 0 else 1
