"""Real capture tools for the capture tests: dumpcap, editcap, tshark (Debian wireshark)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

TOOL_PACKAGES = {"dumpcap": "wireshark-common", "editcap": "wireshark-common", "tshark": "tshark"}


def require_tools(*names: str) -> None:
    for name in names:
        if shutil.which(name) is None:
            pytest.skip(
                f"{name} not installed (Debian package {TOOL_PACKAGES[name]}; "
                "scripts/install-test-deps.sh installs it)"
            )


def run_tool(*args: str) -> str:
    done = subprocess.run(args, capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0:
        raise AssertionError(f"{args} failed ({done.returncode}): {done.stderr}")
    return done.stdout


def tshark_count(path: Path, *options: str) -> int:
    """How many frames tshark shows of ``path`` with ``options`` (e.g. ``-Y sip``)."""
    return len(run_tool("tshark", "-r", str(path), *options, "-T", "fields",
                        "-e", "frame.number").split())


@contextmanager
def dumpcap(
    path: Path, capture_filter: str, probe: tuple[str, int], *, interface: str = "lo",
    linktype: str | None = None,
) -> Iterator[None]:
    """Capture on ``interface`` while the body runs; the capture is live before it starts.

    UDP probes to ``probe`` (which the filter must match) are sent until dumpcap counts one.
    """
    args = ["dumpcap", "-i", interface, "-f", capture_filter, "-w", str(path)]
    if linktype:
        args += ["-y", linktype]
    proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, start_new_session=True)
    assert proc.stderr is not None
    text = b""
    try:
        family = socket.AF_INET6 if ":" in probe[0] else socket.AF_INET
        with socket.socket(family, socket.SOCK_DGRAM) as sender:
            deadline = time.monotonic() + 20
            os.set_blocking(proc.stderr.fileno(), False)
            while not re.search(rb"Packets: [1-9]", text):
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise AssertionError(f"dumpcap never counted a probe: {text!r}")
                sender.sendto(b"probe", probe)
                time.sleep(0.1)
                text += proc.stderr.read() or b""
        yield
        time.sleep(0.3)  # let the last packets reach the file
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
