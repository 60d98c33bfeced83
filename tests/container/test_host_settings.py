"""How the container tests read this machine's apt mirror and pip settings (no podman)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.container.podman import (
    DEFAULT_MIRROR,
    MIRROR_ENV,
    SYSTEM_CA_BUNDLE,
    apt_archives,
    debian_mirror,
    pip_build_args,
)

DEB822 = """\
Types: deb
# http://snapshot.example.org/archive/debian/20250520T000000Z
URIs: http://mirror.example.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://mirror.example.org/debian-security
Suites: bookworm-security
Components: main
"""


@pytest.fixture
def apt_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv(MIRROR_ENV, raising=False)
    (tmp_path / "sources.list.d").mkdir()
    return tmp_path


def test_deb822_sources_give_the_release_archive_not_security(apt_dir: Path) -> None:
    (apt_dir / "sources.list.d" / "debian.sources").write_text(DEB822)
    (apt_dir / "sources.list.d" / "other.sources.disabled").write_text(
        "Types: deb\nURIs: https://other.example.org/apt\nSuites: stable\n")
    assert apt_archives(apt_dir) == [
        ("http://mirror.example.org/debian", ["bookworm", "bookworm-updates"]),
        ("http://mirror.example.org/debian-security", ["bookworm-security"]),
    ]
    assert debian_mirror(apt_dir) == "http://mirror.example.org/debian"


def test_one_line_sources_with_options_come_first(apt_dir: Path) -> None:
    (apt_dir / "sources.list").write_text(
        "# deb http://commented.example.org/debian bookworm main\n"
        "deb-src http://src.example.org/debian bookworm main\n"
        "deb [arch=amd64 signed-by=/k.gpg] http://security.example.org/debian-security "
        "bookworm-security main\n"
        "deb [arch=amd64] http://one.example.org/debian/ bookworm main\n")
    (apt_dir / "sources.list.d" / "debian.sources").write_text(DEB822)
    assert debian_mirror(apt_dir) == "http://one.example.org/debian"


def test_disabled_stanzas_and_no_sources_fall_back(apt_dir: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    (apt_dir / "sources.list.d" / "debian.sources").write_text("Enabled: no\n" + DEB822)
    assert apt_archives(apt_dir)[0][0] == "http://mirror.example.org/debian-security"
    assert debian_mirror(apt_dir) == DEFAULT_MIRROR
    monkeypatch.setenv(MIRROR_ENV, "http://given.example.org/debian/")
    assert debian_mirror(apt_dir) == "http://given.example.org/debian"


def test_pip_settings_become_build_args_and_local_indexes_mounts(tmp_path: Path) -> None:
    (tmp_path / "pypi" / "simple").mkdir(parents=True)
    (tmp_path / "wheels").mkdir()
    settings = pip_build_args({
        "index-url": "https://pypi.example.org/simple",
        "extra-index-url": f"file://{tmp_path}/pypi/simple file://{tmp_path}/gone/simple",
        "find-links": str(tmp_path / "wheels"),
        "cert": "/somewhere/ca.pem",
        "default-timeout": "180",
    })
    assert settings.build_args == {
        "PIP_INDEX_URL": "https://pypi.example.org/simple",
        "PIP_EXTRA_INDEX_URL": f"file://{tmp_path}/pypi/simple",
        "PIP_FIND_LINKS": str(tmp_path / "wheels"),
        "PIP_CERT": SYSTEM_CA_BUNDLE,
        "PIP_DEFAULT_TIMEOUT": "180",
    }
    # The index's files sit beside simple/: its parent is mounted.
    assert settings.mounts == (tmp_path / "pypi", tmp_path / "wheels")
