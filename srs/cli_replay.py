"""``srs replay``: record the SIPREC sessions of a packet capture."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from srs.capture import CaptureFormatError
from srs.log import configure_logging

HELP = "record the SIPREC sessions of a pcap/pcapng capture offline (--out DIR)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("capture", type=Path, help="pcap or pcapng file")
    parser.add_argument("--out", type=Path, required=True,
                        help="directory to write the recordings into (created if missing)")
    parser.add_argument("--progress", action="store_true",
                        help="show a progress bar even when stderr is not a terminal")


def _progress_bar(enabled: bool):  # type: ignore[no-untyped-def]
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
    from srs.replay import replay_capture

    configure_logging("warning", "console", stream=sys.stderr)
    if not args.capture.is_file():
        print(f"srs replay: {args.capture}: no such file", file=sys.stderr)
        return 2
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
