"""Checks and conversions the settings tree shares (srs.config): IP networks and
addresses as allow-lists compare them, ranges, ports, header-name tokens, usable CPUs.
Each check raises :class:`~srs.errors.ConfigError` naming the key."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import SplitResult, urlsplit

from srs.errors import ConfigError

__all__ = ["IpAddress", "IpNetwork", "check_host", "check_ip", "check_port", "check_range",
           "ip_of", "is_token", "networks", "split_url", "usable_cpus"]

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def ip_of(text: str | None) -> IpAddress | None:
    """A peer-supplied address as an IP address, the way allow-lists compare it: IPv4-mapped
    IPv6 as IPv4 (RFC 4291 §2.5.5.2), without a zone; None for anything that is not an IP
    literal (never resolved) and for the unspecified address."""
    if not text:
        return None
    try:
        address = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return None if address.is_unspecified else address



def networks(key: str, items: tuple[str, ...],
              presets: Mapping[str, tuple[str, ...]]) -> tuple[IpNetwork, ...]:
    result: list[IpNetwork] = []
    for item in items:
        for cidr in presets.get(item.lower(), (item,)):
            try:
                network = ipaddress.ip_network(cidr, strict=False)
            except ValueError:
                raise ConfigError(key, f"not a CIDR or preset: {item!r}") from None
            mapped = network.network_address.ipv4_mapped if network.version == 6 else None
            if mapped is not None and network.prefixlen >= 96:
                # Sources are compared as IPv4 when IPv4-mapped (RFC 4291 §2.5.5.2): so are
                # networks written that way, or they would never match.
                network = ipaddress.ip_network(f"{mapped}/{network.prefixlen - 96}")
            result.append(network)
    return tuple(result)


def check_port(key: str, port: int) -> None:
    if not 0 <= port <= 65535:
        raise ConfigError(key, f"must be a port from 0 to 65535: {port}")


def usable_cpus(cpu_max: Path = Path("/sys/fs/cgroup/cpu.max")) -> int:
    """The CPUs this process may use: its affinity, capped by a cgroup v2 CPU quota (a
    container's ``--cpus``), rounded up."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    try:
        quota, period = cpu_max.read_text().split()[:2]
        if quota != "max":
            cpus = min(cpus, -(-int(quota) // int(period)))
    except (OSError, ValueError):
        pass  # no cgroup v2 quota to read
    return max(1, cpus)


def check_range(key: str, value: float, low: float, high: float) -> None:
    if not low <= value <= high:
        raise ConfigError(key, f"must be from {low} to {high}: {value}")


def check_ip(key: str, value: str) -> None:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        raise ConfigError(key, f"not an IP address: {value!r}") from None


def check_host(key: str, value: str) -> None:
    check_ip(key, value)


_TOKEN_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~")


def is_token(text: str) -> bool:
    """RFC 3261 §25.1 ``token``: what a header name may be made of."""
    return bool(text) and all(ch in _TOKEN_CHARS for ch in text)


def split_url(url: str, key: str, default_ports: Mapping[str, int],
              credentials_hint: str) -> tuple[SplitResult, str, str, int]:
    """A configured URL's parts, its scheme (lower case, one of ``default_ports``), host
    and port.  User information is refused (a credential in a URL ends up in logs and
    process lists: ``credentials_hint`` says where it goes instead), and so is whitespace
    or a control character anywhere."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ConfigError(key, f"not a URL: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in default_ports:
        names = " or ".join(f"{name}://" for name in default_ports)
        article = "an" if names[0] in "aeiouh" else "a"  # "an http://", "a ws://"
        # The scheme only: the rest of a URL may carry a token.
        got = f"not {parts.scheme!r}" if parts.scheme else "and this has no scheme"
        raise ConfigError(key, f"must be {article} {names} URL, {got}")
    if parts.username is not None or parts.password is not None:
        raise ConfigError(key, f"must not contain user information ({credentials_hint})")
    host = parts.hostname
    if not host or any(ch.isspace() or ord(ch) < 0x21 for ch in url):
        raise ConfigError(key, "needs a host and no whitespace or control characters")
    return parts, scheme, host, port or default_ports[scheme]
