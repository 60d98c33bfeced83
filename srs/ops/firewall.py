"""nftables rules that let SIP and RTP reach srs only from the recording client's ranges.

Pure: settings and address lists in, rule-set text out.  ``srs firewall`` prints it, and
``deploy/nftables/srs-twilio.nft`` is its output for the default settings, so the ports
come from the same settings tree as the server's and Twilio's ranges from the same tuples
as the ``twilio`` allow-list preset (``srs.config``): one source of truth for both.

The rule set is a table of its own in the ``inet`` family (IPv4 and IPv6 in one table).
Its one chain hooks ``input`` with policy ``accept`` and *drops* traffic to srs's ports
from every other source: it narrows what reaches srs and leaves the rest of the host's
policy alone.  In nftables a packet must pass every base chain on a hook, so an ``accept``
here cannot open a port that a distribution firewall (policy ``drop``) keeps closed — that
firewall must open the ports itself — while a ``drop`` here is final whatever runs after.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass

from srs.config import TWILIO_MEDIA_CIDRS, TWILIO_SIGNALLING_CIDRS, Settings
from srs.errors import ConfigError

__all__ = ["FirewallPlan", "nftables_ruleset", "DEFAULT_TABLE"]

DEFAULT_TABLE = "srs"

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# nft(8) identifiers: a letter, then letters, digits, '_' and '-'.  Kept narrower than
# nft's own grammar so that a table name never needs quoting.
_IDENTIFIER = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}")

# After connection tracking (priority -200) and a little before the distributions' filter
# chains (priority filter = 0: firewalld, ufw via iptables-nft, Debian's nftables.conf), so
# the order of the chains on the hook is fixed rather than left to load order.
_PRIORITY = "filter - 10"


@dataclass(frozen=True)
class FirewallPlan:
    """What the rule set lets in: srs's ports and the sources allowed to reach each."""

    sip_port: int
    """SIP over UDP and TCP; 0 when srs does not listen there."""
    tls_port: int
    """SIP over TLS (TCP); 0 when srs does not listen there."""
    rtp_port_min: int
    rtp_port_max: int
    sip_sources: tuple[IpNetwork, ...]
    """Sources allowed to reach the SIP ports (overlaps merged, sorted)."""
    rtp_sources: tuple[IpNetwork, ...]
    """Sources allowed to reach the RTP port range (overlaps merged, sorted)."""
    table: str = DEFAULT_TABLE

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        extra_sip: Iterable[str] = (),
        extra_rtp: Iterable[str] = (),
        twilio: bool = True,
        table: str = DEFAULT_TABLE,
    ) -> FirewallPlan:
        """The plan for a server with these settings: Twilio's ranges (unless ``twilio`` is
        false) plus the extra CIDRs, on the ports the server listens on."""
        if not _IDENTIFIER.fullmatch(table):
            raise ConfigError("--table", f"not an nftables name (a letter, then letters, "
                                         f"digits, '_' or '-'): {table!r}")
        sip = _networks("--allow-sip", [*(TWILIO_SIGNALLING_CIDRS if twilio else ()), *extra_sip])
        rtp = _networks("--allow-rtp", [*(TWILIO_MEDIA_CIDRS if twilio else ()), *extra_rtp])
        if settings.sip.port == 0 and settings.sip.tls_port == 0:
            raise ConfigError("sip.port", "SIP is disabled on every transport: nothing to open")
        if not sip:
            raise ConfigError("--allow-sip", "no source may reach SIP: give at least one CIDR")
        if not rtp:
            raise ConfigError("--allow-rtp", "no source may reach RTP: give at least one CIDR")
        return cls(
            sip_port=settings.sip.port,
            tls_port=settings.sip.tls_port,
            rtp_port_min=settings.media.port_min,
            rtp_port_max=settings.media.port_max,
            sip_sources=sip,
            rtp_sources=rtp,
            table=table,
        )


def _networks(option: str, cidrs: Iterable[str]) -> tuple[IpNetwork, ...]:
    """Parse, then merge overlaps: an nftables interval set refuses overlapping elements."""
    parsed: list[IpNetwork] = []
    for cidr in cidrs:
        try:
            parsed.append(ipaddress.ip_network(cidr.strip(), strict=False))
        except ValueError:
            raise ConfigError(option, f"not a CIDR: {cidr!r}") from None
    v4 = ipaddress.collapse_addresses(n for n in parsed if n.version == 4)
    v6 = ipaddress.collapse_addresses(n for n in parsed if n.version == 6)
    return (*v4, *v6)


def _ports(ports: Iterable[str]) -> str:
    unique = list(dict.fromkeys(ports))
    return unique[0] if len(unique) == 1 else "{ " + ", ".join(unique) + " }"


def _set(name: str, kind: str, networks: list[IpNetwork]) -> list[str]:
    lines = [f"\tset {name} {{", f"\t\ttype {kind}", "\t\tflags interval", "\t\telements = {"]
    lines += [f"\t\t\t{net}," for net in networks]
    return [*lines, "\t\t}", "\t}", ""]


def nftables_ruleset(plan: FirewallPlan) -> str:
    """The rule set as text for ``nft -f``: it replaces the table ``plan.table`` only."""
    rtp = f"{plan.rtp_port_min}-{plan.rtp_port_max}"
    sip_udp = [str(plan.sip_port)] if plan.sip_port else []
    sip_tcp = [str(p) for p in (plan.sip_port, plan.tls_port) if p]
    listening = []
    if plan.sip_port:
        listening.append(f"SIP UDP/TCP {plan.sip_port}")
    if plan.tls_port:
        listening.append(f"SIP TLS {plan.tls_port}")
    head = [
        "#!/usr/sbin/nft -f",
        "# srs: SIP and RTP reach this host only from the recording client's address ranges.",
        "#",
        "# Generated by `srs firewall` from the srs settings (the same ports as `srs serve`)",
        "# and the ranges in srs.config; regenerate rather than edit:",
        "#   srs firewall --config srs.toml > srs-twilio.nft",
        "#",
        f"#   {', '.join(listening)}: from {len(plan.sip_sources)} signalling range(s)",
        f"#   RTP and RTCP UDP {rtp}: from {len(plan.rtp_sources)} media range(s)",
        "#",
        f"# The table `inet {plan.table}` is srs's own: loading this file replaces that table",
        "# and nothing else.  Its chain drops traffic to srs's ports from other sources and",
        "# accepts nothing on the host's behalf: a host firewall whose input policy is drop",
        "# must open these ports itself (an accept in one chain does not bind another).",
        f"#   load: nft -f srs-twilio.nft        remove: nft delete table inet {plan.table}",
        "",
        # Declaring then deleting the table makes the load replace it in one transaction,
        # whether or not it existed before (nft 1.0.6 has no 'destroy').
        f"table inet {plan.table}",
        f"delete table inet {plan.table}",
        "",
        f"table inet {plan.table} {{",
    ]
    body: list[str] = []
    accepts: list[str] = []
    for family, kind, match in ((4, "ipv4_addr", "ip saddr"), (6, "ipv6_addr", "ip6 saddr")):
        sip = [n for n in plan.sip_sources if n.version == family]
        media = [n for n in plan.rtp_sources if n.version == family]
        if sip:
            body += _set(f"sip_sources_v{family}", kind, sip)
            allowed = f"{match} @sip_sources_v{family} accept"
            if sip_udp:
                accepts.append(f"\t\tudp dport {_ports(sip_udp)} {allowed}")
            accepts.append(f"\t\ttcp dport {_ports(sip_tcp)} {allowed}")
        if media:
            body += _set(f"rtp_sources_v{family}", kind, media)
            accepts.append(f"\t\tudp dport {rtp} {match} @rtp_sources_v{family} accept")
    chain = [
        "\tchain input {",
        f"\t\ttype filter hook input priority {_PRIORITY}; policy accept;",
        '\t\tiif "lo" accept',
        "\t\tct state established,related accept",
        *accepts,
        f'\t\tudp dport {_ports([*sip_udp, rtp])} counter drop comment "srs: source not allowed"',
        f'\t\ttcp dport {_ports(sip_tcp)} counter drop comment "srs: source not allowed"',
        "\t}",
        "}",
    ]
    return "\n".join([*head, *body, *chain]) + "\n"
