"""Build and run srs's image with Debian's podman, everything under one work directory.

* :func:`debian_mirror` -- the Debian archive this machine's apt uses (its sources), which
  debootstrap fetches the base image from;
* :func:`base_rootfs_tarball` -- ``debootstrap --variant=minbase bookworm``, packed as a
  tarball and cached (see :func:`cache_dir`) so later runs skip it;
* :func:`pip_build_args` -- the host's pip settings (index, mirrors, find-links, CA bundle)
  as the ``PIP_*`` build arguments that the Dockerfile's build stage reads, and the local
  directories they name, mounted read-only into the build;
* :class:`Podman` -- podman with its own storage, run directory and configuration under the
  work directory, so nothing it builds or starts touches the machine's own podman state.

Podman settings that machines without systemd and without CAP_SYS_RESOURCE need (the
reason for each is next to it in :meth:`Podman.write_config`): runc with cgroupfs, events
to a file, rlimits no higher than podman's own, ``--format docker`` so that the
HEALTHCHECK survives, and health checks polled with ``podman healthcheck run`` (there are
no systemd timers to run them).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import resource
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

SUITE = "bookworm"
BASE_IMAGE = "docker.io/library/debian:bookworm-slim"  # what `FROM debian:bookworm-slim` means
DEFAULT_MIRROR = "http://deb.debian.org/debian"
CACHE_ENV = "SRS_TEST_CACHE"
MIRROR_ENV = "SRS_TEST_DEBIAN_MIRROR"
CACHE_MAX_AGE_S = 30 * 86400  # a month-old base is refreshed: its packages age
SYSTEM_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
LOCAL_CA_DIR = Path("/usr/local/share/ca-certificates")
APT_SOURCES = Path("/etc/apt")

# pip's settings (`pip config list` keys) and the build argument each becomes.
PIP_SETTINGS = {
    "index-url": "PIP_INDEX_URL",
    "extra-index-url": "PIP_EXTRA_INDEX_URL",
    "find-links": "PIP_FIND_LINKS",
    "trusted-host": "PIP_TRUSTED_HOST",
    "default-timeout": "PIP_DEFAULT_TIMEOUT",
    "cert": "PIP_CERT",
}


class PodmanError(RuntimeError):
    """A podman (or debootstrap) command failed; the message carries its output."""


# --------------------------------------------------------------------------- host facts


def _deb822_stanzas(text: str) -> Iterator[dict[str, str]]:
    for block in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        for line in block.splitlines():
            if line.startswith("#") or ":" not in line or line[:1].isspace():
                continue
            key, value = line.split(":", 1)
            fields[key.strip().lower()] = value.strip()
        if fields:
            yield fields


def apt_archives(apt_dir: Path = APT_SOURCES) -> list[tuple[str, list[str]]]:
    """(URI, suites) of every enabled ``deb`` source, in apt's reading order."""
    found: list[tuple[str, list[str]]] = []
    parts = sorted(p for p in (apt_dir / "sources.list.d").glob("*")
                   if p.suffix in (".list", ".sources"))
    for path in [apt_dir / "sources.list", *parts]:
        if not path.is_file():
            continue
        text = path.read_text(errors="replace")
        if path.suffix == ".sources":
            for stanza in _deb822_stanzas(text):
                if stanza.get("enabled", "yes").lower() == "no":
                    continue
                if "deb" in stanza.get("types", "").split():
                    found.extend((uri, stanza.get("suites", "").split())
                                 for uri in stanza.get("uris", "").split())
            continue
        for line in text.splitlines():
            words = re.sub(r"\[[^]]*\]", " ", line.split("#", 1)[0]).split()
            if len(words) >= 3 and words[0] == "deb":
                found.append((words[1], [words[2]]))
    return found


def debian_mirror(apt_dir: Path = APT_SOURCES) -> str:
    """The Debian archive this machine reaches: ``$SRS_TEST_DEBIAN_MIRROR``, else the first
    apt source with a plain release suite (not -security or -updates), else deb.debian.org."""
    override = os.environ.get(MIRROR_ENV)
    if override:
        return override.rstrip("/")
    for uri, suites in apt_archives(apt_dir):
        plain = [s for s in suites if "-" not in s and "/" not in s]
        if plain and "security" not in uri and urlsplit(uri).scheme in ("http", "https"):
            return uri.rstrip("/")
    return DEFAULT_MIRROR


def cache_dir() -> Path:
    """Where the debootstrapped base is kept between runs: ``$SRS_TEST_CACHE``, else
    /var/cache/srs-test for root, else ~/.cache/srs-test."""
    override = os.environ.get(CACHE_ENV)
    if override:
        return Path(override)
    if os.geteuid() == 0:
        return Path("/var/cache/srs-test")
    return Path.home() / ".cache" / "srs-test"


def host_pip_config(python: str = sys.executable) -> dict[str, str]:
    """pip's effective settings on this machine (files and PIP_* variables), by key."""
    out = subprocess.run([python, "-m", "pip", "config", "list"], capture_output=True,
                         text=True, check=False).stdout
    settings: dict[str, str] = {}
    for line in out.splitlines():
        match = re.fullmatch(r"(?:[^.=]*)\.([a-z-]+)='(.*)'", line.strip())
        if match and match.group(1) in PIP_SETTINGS:
            # later lines (user files, then the environment) win, as in pip itself
            settings[match.group(1)] = match.group(2)
    return settings


def _local_path(location: str) -> Path | None:
    if location.startswith("file://"):
        return Path(urlsplit(location).path)
    if location.startswith("/"):
        return Path(location)
    return None


@dataclass(frozen=True)
class PipBuildSettings:
    build_args: dict[str, str]
    mounts: tuple[Path, ...]  # local index / wheel directories, mounted at the same path


def pip_build_args(config: dict[str, str]) -> PipBuildSettings:
    """The host's pip settings as build arguments for the Dockerfile's build stage.

    Local indexes and wheel directories (``file://`` URLs, paths) are mounted read-only at
    the same path in the build.  A CA setting becomes the image's system bundle: the
    host's own CAs are added to the base image (:func:`add_host_cas_containerfile`)."""
    args: dict[str, str] = {}
    mounts: list[Path] = []
    for key, value in config.items():
        if key == "cert":
            args[PIP_SETTINGS[key]] = SYSTEM_CA_BUNDLE
            continue
        kept = []
        for item in value.split():
            local = _local_path(item)
            if local is not None:
                if not local.exists():
                    continue  # pip skips a missing directory too
                root = local.parent if key != "find-links" and local.name == "simple" else local
                mounts.append(root)
            kept.append(item)
        if kept:
            args[PIP_SETTINGS[key]] = " ".join(kept)
    return PipBuildSettings(args, tuple(dict.fromkeys(mounts)))


# --------------------------------------------------------------------------- commands


def run_logged(args: Sequence[str], *, log: Path, env: dict[str, str] | None = None,
               timeout_s: float, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a command, append its command line and output to ``log``, raise on failure."""
    result = subprocess.run(list(args), check=False, capture_output=True, text=True, env=env,
                            timeout=timeout_s, stdin=subprocess.DEVNULL)
    with log.open("a") as out:
        out.write(f"$ {shlex.join(args)}\n[exit {result.returncode}]\n{result.stdout}"
                  f"{result.stderr}\n")
    if check and result.returncode != 0:
        tail = (result.stdout + result.stderr)[-4000:]
        raise PodmanError(f"{shlex.join(args)} exited {result.returncode} (log {log}):\n{tail}")
    return result


def base_rootfs_tarball(cache: Path, mirror: str, *, log: Path) -> Path:
    """A tarball of ``debootstrap --variant=minbase bookworm`` from ``mirror``, cached.

    Built into a temporary directory beside the cache entry and renamed into place, so a
    failed or concurrent run never leaves a half-written tarball behind."""
    includes = ["ca-certificates"] if mirror.startswith("https:") else []  # apt over HTTPS
    key = hashlib.sha256(json.dumps([SUITE, mirror, includes]).encode()).hexdigest()[:16]
    tarball = cache / f"debian-{SUITE}-minbase-{key}.tar"
    if tarball.is_file() and time.time() - tarball.stat().st_mtime < CACHE_MAX_AGE_S:
        return tarball
    cache.mkdir(parents=True, exist_ok=True)
    scratch = cache / f"build-{os.getpid()}-{time.monotonic_ns()}"
    rootfs = scratch / "rootfs"
    try:
        args = ["debootstrap", "--variant=minbase"]
        if includes:
            args.append("--include=" + ",".join(includes))
        run_logged([*args, SUITE, str(rootfs), mirror], log=log, timeout_s=1200)
        # What a slim image leaves out: downloaded packages and package lists.
        for leftover in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for item in (rootfs / leftover).glob("*"):
                if item.is_file():
                    item.unlink()
        packed = scratch / "rootfs.tar"
        run_logged(["tar", "-C", str(rootfs), "--numeric-owner", "-cf", str(packed), "."],
                   log=log, timeout_s=600)
        os.replace(packed, tarball)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    for stale in cache.glob(f"debian-{SUITE}-minbase-*.tar"):
        if stale != tarball:
            stale.unlink(missing_ok=True)
    return tarball


def add_host_cas_containerfile() -> str:
    """A Containerfile step that adds the host's local CAs (an HTTPS proxy's, a private
    index's) to the raw debootstrapped image, as an administrator would on this network."""
    return (
        "FROM localhost/srs-test-debian-raw\n"
        "COPY ca-certificates/ /usr/local/share/ca-certificates/\n"
        "RUN if command -v update-ca-certificates >/dev/null; then update-ca-certificates; fi\n"
    )


# --------------------------------------------------------------------------- podman


def _nofile_and_nproc() -> tuple[int, int]:
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    nproc = resource.getrlimit(resource.RLIMIT_NPROC)[1]
    try:
        pid_max = int(Path("/proc/sys/kernel/pid_max").read_text())
    except (OSError, ValueError):
        pid_max = nproc
    unlimited = resource.RLIM_INFINITY
    nofile = 1048576 if nofile == unlimited else nofile
    nproc = pid_max if nproc == unlimited else min(nproc, pid_max)
    return nofile, nproc


@dataclass
class Podman:
    """``podman`` with storage, runtime state and configuration under ``work``."""

    work: Path
    log: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log = self.work / "podman.log"
        self.write_config()

    @property
    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            CONTAINERS_CONF=str(self.work / "containers.conf"),
            CONTAINERS_STORAGE_CONF=str(self.work / "storage.conf"),
            CONTAINERS_REGISTRIES_CONF=str(self.work / "registries.conf"),
            TMPDIR=str(self.work / "tmp"),
            BUILDAH_FORMAT="docker",
        )
        return env

    def write_config(self) -> None:
        for sub in ("storage", "run", "tmp", "libpod-tmp", "cni"):
            (self.work / sub).mkdir(parents=True, exist_ok=True)
        nofile, nproc = _nofile_and_nproc()
        (self.work / "containers.conf").write_text(
            "[containers]\n"
            # runc sets the container's rlimits with prlimit(2); without CAP_SYS_RESOURCE
            # it cannot go above podman's own, which are the host's hard nofile limit and
            # kernel.pid_max for nproc (podman's defaults, 1048576 and more, fail).
            f'default_ulimits = ["nofile={nofile}:{nofile}", "nproc={nproc}:{nproc}"]\n'
            "[engine]\n"
            # crun is not installed, and without systemd there is no cgroup manager to ask.
            'runtime = "runc"\n'
            'cgroup_manager = "cgroupfs"\n'
            'events_logger = "file"\n'
            f'events_logfile_path = "{self.work / "events.log"}"\n'
            f'tmp_dir = "{self.work / "libpod-tmp"}"\n'
            "[network]\n"
            f'network_config_dir = "{self.work / "cni"}"\n'
        )
        (self.work / "storage.conf").write_text(
            "[storage]\n"
            'driver = "overlay"\n'
            f'graphroot = "{self.work / "storage"}"\n'
            f'runroot = "{self.work / "run"}"\n'
        )
        # Nothing is pulled: the base image is imported, and short names resolve to it.
        (self.work / "registries.conf").write_text(
            'unqualified-search-registries = ["docker.io"]\nshort-name-mode = "permissive"\n'
        )

    def __call__(self, *args: str, timeout_s: float = 120, check: bool = True,
                 ) -> subprocess.CompletedProcess[str]:
        return run_logged(["podman", *args], log=self.log, env=self.env,
                          timeout_s=timeout_s, check=check)

    def inspect(self, kind: str, name: str) -> dict[str, Any]:
        (document,) = json.loads(self(kind, "inspect", name).stdout)
        return dict(document)

    def import_base(self, tarball: Path, host_cas: Path = LOCAL_CA_DIR) -> None:
        """Import the debootstrapped tarball, add the host's CAs, and tag the result with
        the name the Dockerfile's FROM lines use."""
        self("import", str(tarball), "localhost/srs-test-debian-raw", timeout_s=300)
        context = self.work / "base-context"
        certs = context / "ca-certificates"
        certs.mkdir(parents=True, exist_ok=True)
        for cert in sorted(host_cas.rglob("*.crt")) if host_cas.is_dir() else []:
            shutil.copy(cert, certs / cert.name)
        (context / "Containerfile").write_text(add_host_cas_containerfile())
        self("build", "--pull=never", "--network", "host", "-t", BASE_IMAGE,
             str(context), timeout_s=300)

    def build(self, context: Path, tag: str, pip: PipBuildSettings) -> None:
        args = ["build", "--format", "docker", "--pull=never", "--network", "host",
                "-t", tag]
        for name, value in pip.build_args.items():
            args += ["--build-arg", f"{name}={value}"]
        for mount in pip.mounts:
            args += ["--volume", f"{mount}:{mount}:ro"]
        self(*args, str(context), timeout_s=1200)

    def remove_all(self) -> None:
        """Remove every container and image in this work directory's storage, and check
        that nothing is left mounted below it."""
        self("rm", "--all", "--force", "--time", "0", check=False, timeout_s=120)
        self("system", "reset", "--force", check=False, timeout_s=300)
        for mount in reversed(mounts_below(self.work)):
            subprocess.run(["umount", "-l", mount], check=False)


def mounts_below(directory: Path) -> list[str]:
    prefix = str(directory.resolve()) + "/"
    with open("/proc/self/mounts") as mounts:
        points = [line.split()[1].replace("\\040", " ") for line in mounts]
    return [p for p in points if p.startswith(prefix)]
