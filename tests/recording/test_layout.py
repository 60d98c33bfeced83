"""Session directory layout: names from network text are sanitised and never collide."""

from __future__ import annotations

import hashlib
import string
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from srs.errors import UsageError
from srs.recording.layout import (
    MAX_DIR_ATTEMPTS,
    MAX_METADATA_BYTES,
    MAX_NAME_CHARS,
    SessionLayout,
    create_session_dir,
    is_safe_name,
    sanitise_name,
    session_dir_name,
    unique_stream_stem,
    write_metadata,
)
from srs.recording.wav import RecordingIOError

START = datetime(2026, 11, 23, 10, 15, 0, 250_000, tzinfo=UTC)
SAFE = set(string.ascii_letters + string.digits + "._-")


def short_hash(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()[:8]


def test_safe_names_pass_unchanged() -> None:
    assert sanitise_name("0123456789abcdef-Ab_c.d") == "0123456789abcdef-Ab_c.d"


@pytest.mark.parametrize(
    ("raw", "expected_stem"),
    [
        ("a84b4c76e66710@0.0.0.0", "a84b4c76e66710_0.0.0.0"),  # Twilio Call-ID shape
        ("../../etc/passwd", "_._.._etc_passwd"),
        ("..", "_."),
        (".", "_"),
        (".hidden", "_hidden"),
        ("a/b\\c\x00d", "a_b_c_d"),
        ("späť", "sp__"),
        ("", "x"),
    ],
)
def test_unsafe_names_are_replaced_and_hashed(raw: str, expected_stem: str) -> None:
    assert sanitise_name(raw) == f"{expected_stem}-{short_hash(raw)}"


def test_long_names_are_cut_and_hashed() -> None:
    raw = "a" * 100
    assert sanitise_name(raw) == "a" * MAX_NAME_CHARS + "-" + short_hash(raw)
    assert sanitise_name("a" * MAX_NAME_CHARS) == "a" * MAX_NAME_CHARS


def test_ids_that_sanitise_alike_stay_apart() -> None:
    assert sanitise_name("call@host") != sanitise_name("call#host")
    assert sanitise_name("a" * 70) != sanitise_name("a" * 71)


def test_max_chars_below_one_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="max_chars"):
        sanitise_name("a", max_chars=0)


@given(st.text(max_size=300))
def test_any_text_gives_a_safe_bounded_component(raw: str) -> None:
    name = sanitise_name(raw)
    assert set(name) <= SAFE
    assert name not in (".", "..") and not name.startswith(".")
    assert 1 <= len(name) <= MAX_NAME_CHARS + 9
    assert is_safe_name(name)


@pytest.mark.parametrize("name", ["", ".", "..", ".x", "a/b", "a b", "a" * 129])
def test_is_safe_name_refuses(name: str) -> None:
    assert not is_safe_name(name)


def test_session_dir_name_uses_utc_start() -> None:
    other_zone = START.astimezone(timezone(timedelta(hours=-5)))
    assert session_dir_name(other_zone, "abc") == "20261123T101500Z_abc"


def test_naive_time_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="time zone"):
        session_dir_name(datetime(2026, 11, 23, 10, 15), "abc")


def test_stream_stems_are_unique_and_positional_without_label() -> None:
    taken: list[str] = []
    for position, label in enumerate(["1", None, "1", "INBOUND", "inbound", "mix", "a/b"], 1):
        taken.append(unique_stream_stem(label, position, taken))
    assert taken == [
        "1",
        "stream-2",
        "1-2",
        "INBOUND",
        "inbound-2",  # case-insensitive file systems keep both
        "mix-2",  # mix.wav belongs to the mix
        f"a_b-{short_hash('a/b')}",
    ]


def test_stream_position_starts_at_one() -> None:
    with pytest.raises(UsageError, match="position 0"):
        unique_stream_stem(None, 0, ())


def test_create_session_dir_builds_dated_path(tmp_path: Path) -> None:
    layout = create_session_dir(tmp_path, START, "a84b@0.0.0.0")
    name = f"20261123T101500Z_a84b_0.0.0.0-{short_hash('a84b@0.0.0.0')}"
    expected = tmp_path / "2026" / "11" / "23" / name
    assert layout.directory == expected
    assert expected.is_dir()
    assert list(expected.iterdir()) == []
    assert layout.sidecar == expected / "session.json"
    assert layout.mix == expected / "mix.wav"
    assert layout.stream_wav("inbound_track") == expected / "inbound_track.wav"
    assert layout.metadata_xml(1) == expected / "metadata-1.xml"
    assert layout.file("metadata-2.xml") == expected / "metadata-2.xml"


def test_create_session_dir_never_reuses_a_directory(tmp_path: Path) -> None:
    first = create_session_dir(tmp_path, START, "same")
    (first.directory / "keep.wav").write_bytes(b"x")
    second = create_session_dir(tmp_path, START, "same")
    third = create_session_dir(tmp_path, START, "same")
    assert second.directory.name == "20261123T101500Z_same-2"
    assert third.directory.name == "20261123T101500Z_same-3"
    assert (first.directory / "keep.wav").read_bytes() == b"x"


def test_create_session_dir_gives_up_after_the_bound(tmp_path: Path) -> None:
    day = tmp_path / "2026" / "11" / "23"
    day.mkdir(parents=True)
    (day / "20261123T101500Z_x").mkdir()
    for attempt in range(2, MAX_DIR_ATTEMPTS + 1):
        (day / f"20261123T101500Z_x-{attempt}").mkdir()
    with pytest.raises(RecordingIOError) as caught:
        create_session_dir(tmp_path, START, "x")
    assert caught.value.errno == 17  # EEXIST


def test_create_session_dir_under_a_file_is_enotdir(tmp_path: Path) -> None:
    blocker = tmp_path / "recordings"
    blocker.write_bytes(b"not a directory")
    with pytest.raises(RecordingIOError) as caught:
        create_session_dir(blocker, START, "x")
    assert caught.value.errno == 20  # ENOTDIR
    assert "ENOTDIR" in str(caught.value)


@pytest.mark.parametrize("name", ["../x", "a/b", ".", ""])
def test_layout_refuses_unsanitised_names(name: str) -> None:
    layout = SessionLayout(Path("/r/s"))
    with pytest.raises(UsageError, match="sanitised"):
        layout.stream_wav(name)
    with pytest.raises(UsageError, match="sanitised"):
        layout.file(name)


def test_metadata_version_starts_at_one() -> None:
    with pytest.raises(UsageError, match="version 0"):
        SessionLayout(Path("/r/s")).metadata_xml(0)


def test_write_metadata_keeps_raw_bytes_once(tmp_path: Path) -> None:
    layout = create_session_dir(tmp_path, START, "s")
    raw = b'<?xml version="1.0"?>\r\n<recording xmlns="urn:ietf:params:xml:ns:recording:1"/>'
    path = write_metadata(layout, 1, raw)
    assert path == layout.directory / "metadata-1.xml"
    assert path.read_bytes() == raw
    with pytest.raises(RecordingIOError) as caught:
        write_metadata(layout, 1, b"<other/>")
    assert caught.value.errno == 17  # EEXIST: a version is never overwritten
    assert path.read_bytes() == raw


def test_write_metadata_is_bounded(tmp_path: Path) -> None:
    layout = create_session_dir(tmp_path, START, "s")
    write_metadata(layout, 1, b"x" * MAX_METADATA_BYTES)
    with pytest.raises(UsageError, match="exceeds"):
        write_metadata(layout, 2, b"x" * (MAX_METADATA_BYTES + 1))
    assert not layout.metadata_xml(2).exists()


def test_write_metadata_never_follows_a_planted_symlink(tmp_path: Path) -> None:
    # O_EXCL refuses an existing name even when it is a link (here to /dev/full).
    layout = create_session_dir(tmp_path, START, "s")
    layout.metadata_xml(1).symlink_to("/dev/full")
    with pytest.raises(RecordingIOError) as caught:
        write_metadata(layout, 1, b"<x/>")
    assert caught.value.errno == 17
    assert layout.metadata_xml(1).is_symlink()
