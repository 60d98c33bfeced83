"""Every file of a session has one mode: the owner's, plus the group's when the umask
allows, never other users' (a capture holds SRTP keys and decrypted SIP)."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import TOKEN, start_server
from tests.sipclient import SipClient, metadata, sdp_offer, send_tones


@pytest.fixture
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    previous = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(previous)


def modes(root: Path) -> tuple[dict[str, int], dict[str, int]]:
    files, dirs = {}, {}
    for path in root.rglob("*"):
        mode = stat.S_IMODE(path.lstat().st_mode)
        (dirs if path.is_dir() else files)[str(path.relative_to(root))] = mode
    return files, dirs


@pytest.mark.parametrize(("umask", "file_mode", "dir_mode"),
                         [(0o022, 0o640, 0o750), (0o002, 0o640, 0o750), (0o077, 0o600, 0o700)],
                         indirect=["umask"])
def test_a_sessions_files_share_one_mode_without_world_access(
        tmp_path: Path, umask: int, file_mode: int, dir_mode: int) -> None:
    running = start_server(tmp_path, recordings={"capture": True})
    try:
        client = SipClient("127.0.0.1", running.sip_port, token=TOKEN)
        call, answer = client.invite()
        assert answer.status == 200
        send_tones(call.ports, (440.0, 1000.0), packets=25)
        client.reinvite(call, sdp_offer(call.ports, ["inbound", "outbound"], version=2),
                        metadata(["inbound", "outbound"], mode="partial"))
        assert client.bye(call).status == 200
        client.close()
        running.wait_sidecar()
    finally:
        running.stop()
    (session,) = running.sessions()
    files, dirs = modes(session)
    assert {"session.json", "capture.pcap", "metadata-1.xml", "metadata-2.xml",
            "mix.wav"} <= set(files), files
    assert sum(name.endswith(".wav") for name in files) == 3
    assert os.path.getsize(session / "capture.pcap") > 25 * 2 * 172
    assert set(files.values()) == {file_mode}, {n: oct(m) for n, m in files.items()}
    # The session directory and the day directories srs made above it.
    made = [session, *session.parents][: len(session.relative_to(running.recordings).parts)]
    assert {stat.S_IMODE(d.stat().st_mode) for d in made} == {dir_mode}
    assert dirs == {}
    state_files, state_dirs = modes(tmp_path / "state")
    assert set(state_files.values()) == {0o600} and set(state_dirs.values()) == {0o700}
    assert stat.S_IMODE((tmp_path / "state").stat().st_mode) == 0o700
