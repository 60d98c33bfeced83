"""Running deploy/kamailio/kamailio.cfg in front of srs nodes on loopback.

``dispatcher_list`` writes the node list; ``kamailio_command`` starts Kamailio in the
foreground with every file it touches under ``workdir``, listening on ``127.0.0.1:port``.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from tests.deploy.tools import DEPLOY

CONFIG = DEPLOY / "kamailio" / "kamailio.cfg"

__all__ = ["CONFIG", "dispatcher_list", "kamailio_command"]


def dispatcher_list(nodes: Iterable[tuple[str, int]], transport: str = "udp") -> str:
    """One line per srs node, all in set 1 (the set kamailio.cfg dispatches over)."""
    lines = [f"1 sip:{host}:{port};transport={transport} 0 0 duid=srs-{i}"
             for i, (host, port) in enumerate(nodes, 1)]
    return "\n".join(lines) + "\n"


def kamailio_command(kamailio: str, workdir: Path, *, port: int, list_file: Path,
                     check_only: bool = False, extra: Iterable[str] = ()) -> list[str]:
    defines = {
        "LISTEN_IP": "127.0.0.1",
        "SIP_PORT": str(port),
        "DISPATCHER_LIST": f'"{list_file}"',
        "CTL_SOCKET": f'"unix:{workdir / "kamailio_ctl"}"',
        "PROBE_INTERVAL_S": "1",
        "NODE_TIMEOUT_MS": "1000",
    }
    args = [kamailio, "-f", str(CONFIG), "-w", str(workdir), "-Y", str(workdir)]
    args += ["-c"] if check_only else ["-DD", "-E", "-n", "2", "-m", "64", "-M", "8"]
    for name, value in defines.items():
        args += ["-A", f"{name}={value}"]
    return [*args, *extra]
