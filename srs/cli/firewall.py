"""``srs firewall``: print the nftables rule set for this server's ports.

The ports come from the same settings as ``srs serve`` (``--config`` file, then ``SRS_*``
variables, then the flags below), the sources from Twilio's published ranges in
``srs.config`` plus any extra CIDRs.  ``deploy/nftables/srs-twilio.nft`` is the output
for the default settings.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from srs.config import load_settings
from srs.errors import ConfigError
from srs.ops.firewall import DEFAULT_TABLE, FirewallPlan, nftables_ruleset

__all__ = ["HELP", "add_arguments", "run"]

HELP = "print an nftables rule set that lets SIP and RTP in only from Twilio's ranges"


def _cidrs(value: str) -> list[str]:
    return [item for item in (part.strip() for part in value.split(",")) if item]


def _rtp_range(value: str) -> tuple[int, int]:
    low, sep, high = value.partition("-")
    try:
        if not sep:
            raise ValueError
        return int(low), int(high)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port range MIN-MAX: {value!r}") from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = (
        "Load the output with `nft -f FILE`; remove it with `nft delete table inet NAME`. "
        "It only drops traffic to srs's ports from other sources: a host firewall with a "
        "drop policy must still open those ports itself."
    )
    parser.add_argument("--config", type=Path, help="TOML settings file (as for srs serve)")
    parser.add_argument(
        "--format", choices=("nftables",), default="nftables", help="output format (nftables)"
    )
    parser.add_argument("--sip-port", type=int, metavar="N", help="SIP UDP/TCP port (sip.port)")
    parser.add_argument("--tls-port", type=int, metavar="N", help="SIP TLS port (sip.tls_port)")
    parser.add_argument(
        "--rtp-range", type=_rtp_range, metavar="MIN-MAX",
        help="RTP port range (media.port_min-media.port_max)",
    )
    parser.add_argument(
        "--allow-sip", type=_cidrs, nargs="+", action="extend", default=[], metavar="CIDR",
        help="another source allowed to reach SIP (e.g. a Kamailio in front of srs)",
    )
    parser.add_argument(
        "--allow-rtp", type=_cidrs, nargs="+", action="extend", default=[], metavar="CIDR",
        help="another source allowed to send RTP",
    )
    parser.add_argument(
        "--no-twilio", action="store_true",
        help="leave Twilio's ranges out: only --allow-sip and --allow-rtp sources",
    )
    parser.add_argument(
        "--table", default=DEFAULT_TABLE, metavar="NAME",
        help=f"name of the inet table (default {DEFAULT_TABLE})",
    )


def run(args: argparse.Namespace) -> int:
    overrides: dict[str, dict[str, object]] = {"sip": {}, "media": {}}
    if args.sip_port is not None:
        overrides["sip"]["port"] = args.sip_port
    if args.tls_port is not None:
        overrides["sip"]["tls_port"] = args.tls_port
    if args.rtp_range is not None:
        overrides["media"]["port_min"], overrides["media"]["port_max"] = args.rtp_range
    try:
        settings = load_settings(args.config, overrides=overrides)
        plan = FirewallPlan.from_settings(
            settings,
            extra_sip=[c for group in args.allow_sip for c in group],
            extra_rtp=[c for group in args.allow_rtp for c in group],
            twilio=not args.no_twilio,
            table=args.table,
        )
    except ConfigError as exc:
        print(f"srs: configuration error: {exc}", file=sys.stderr)
        return 2
    sys.stdout.write(nftables_ruleset(plan))
    return 0
