"""`srs firewall`: the committed rule set is the command's output, and nft accepts it."""

from __future__ import annotations

import ipaddress
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from srs.config import TWILIO_MEDIA_CIDRS, AuthSettings, Settings
from srs.ops.firewall import FirewallPlan, nftables_ruleset
from tests.deploy.tools import DEPLOY, tool

COMMITTED = DEPLOY / "nftables" / "srs-twilio.nft"


def srs_firewall(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The command as an operator runs it, without any SRS_* variable of this shell."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SRS_")}
    return subprocess.run([sys.executable, "-m", "srs", "firewall", *args], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=60)


def set_elements(text: str, name: str) -> list[str]:
    body = re.search(rf"set {name} {{.*?elements = {{(.*?)}}", text, re.S)
    assert body, f"no set {name}"
    return [e.strip() for e in body.group(1).split(",") if e.strip()]


def nft_check(path: Path) -> subprocess.CompletedProcess[str]:
    nft = tool("nft", "nftables")
    if os.geteuid() != 0:
        pytest.skip("nft -c talks to the kernel's netfilter and needs root; CI runs as root")
    return subprocess.run([nft, "-c", "-f", str(path)], capture_output=True, text=True,
                          timeout=60)


def test_committed_rule_set_is_the_output_for_the_default_settings(tmp_path: Path) -> None:
    done = srs_firewall(cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout == COMMITTED.read_text(), (
        "regenerate: srs firewall > deploy/nftables/srs-twilio.nft")
    assert done.stdout == nftables_ruleset(FirewallPlan.from_settings(Settings()))


def test_sources_are_the_twilio_preset_and_media_ranges() -> None:
    text = COMMITTED.read_text()
    preset = AuthSettings(allow_cidrs=("twilio",)).networks()
    assert sorted(map(str, preset)) == sorted(set_elements(text, "sip_sources_v4"))
    assert set_elements(text, "rtp_sources_v4") == list(TWILIO_MEDIA_CIDRS)
    assert "udp dport 5060 ip saddr @sip_sources_v4 accept" in text
    assert "tcp dport { 5060, 5061 } ip saddr @sip_sources_v4 accept" in text
    assert "udp dport 10000-20000 ip saddr @rtp_sources_v4 accept" in text
    assert "type filter hook input priority filter - 10; policy accept;" in text


def test_nft_accepts_the_committed_rule_set() -> None:
    done = nft_check(COMMITTED)
    assert done.returncode == 0, done.stderr


def test_nft_refuses_a_broken_sibling(tmp_path: Path) -> None:
    """The check above can fail: the same file with one prefix out of range is refused."""
    broken = tmp_path / "broken.nft"
    broken.write_text(COMMITTED.read_text().replace("168.86.128.0/18", "168.86.128.0/33"))
    done = nft_check(broken)
    assert done.returncode != 0 and "168.86.128.0/33" in done.stderr


def test_ports_follow_the_settings_file_and_flags(tmp_path: Path) -> None:
    config = tmp_path / "srs.toml"
    config.write_text("[sip]\nport = 5070\ntls_port = 0\n[media]\nport_min = 30000\n"
                      "port_max = 30999\n")
    done = srs_firewall("--config", str(config), "--allow-sip", "192.0.2.0/24,2001:db8::/32",
                        "--allow-rtp", "168.86.130.0/24", "198.51.100.7", "--table", "rec",
                        cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    text = done.stdout
    assert "table inet rec {" in text and "delete table inet rec" in text
    assert "udp dport 5070 ip saddr @sip_sources_v4 accept" in text
    assert "tcp dport 5070 ip6 saddr @sip_sources_v6 accept" in text
    assert "5061" not in text
    assert "udp dport 30000-30999 ip saddr @rtp_sources_v4 accept" in text
    assert "192.0.2.0/24" in set_elements(text, "sip_sources_v4")
    assert set_elements(text, "sip_sources_v6") == ["2001:db8::/32"]
    # Inside Twilio's /18: merged away, since an interval set refuses overlaps.
    assert set_elements(text, "rtp_sources_v4") == ["168.86.128.0/18", "198.51.100.7/32"]
    assert "rtp_sources_v6" not in text
    flags = srs_firewall("--config", str(config), "--sip-port", "5080", "--tls-port", "5081",
                         "--rtp-range", "40000-40100", cwd=tmp_path)
    assert "tcp dport { 5080, 5081 }" in flags.stdout
    assert "udp dport { 5080, 40000-40100 } counter drop" in flags.stdout
    generated = tmp_path / "custom.nft"
    generated.write_text(text)
    checked = nft_check(generated)
    assert checked.returncode == 0, checked.stderr


def test_environment_sets_the_ports_like_srs_serve(tmp_path: Path) -> None:
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("SRS_")},
           "SRS_SIP_PORT": "5090"}
    done = subprocess.run([sys.executable, "-m", "srs", "firewall"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60)
    assert "udp dport 5090 ip saddr @sip_sources_v4 accept" in done.stdout


@pytest.mark.parametrize(("args", "message"), [
    (["--allow-sip", "10.0.0.0/33"], "--allow-sip: not a CIDR: '10.0.0.0/33'"),
    (["--allow-rtp", "nowhere"], "--allow-rtp: not a CIDR: 'nowhere'"),
    (["--table", "1srs"], "--table: not an nftables name"),
    (["--rtp-range", "10001-10999"], "media.port_min: must be even"),
    (["--no-twilio", "--allow-sip", "192.0.2.1"], "--allow-rtp: no source may reach RTP"),
    (["--sip-port", "0", "--tls-port", "0"], "sip.port: SIP is disabled"),
])
def test_bad_input_is_a_configuration_error(tmp_path: Path, args: list[str], message: str) -> None:
    done = srs_firewall(*args, cwd=tmp_path)
    assert done.returncode == 2 and done.stdout == ""
    assert message in done.stderr


def test_without_twilio_only_the_given_sources() -> None:
    plan = FirewallPlan.from_settings(Settings(), twilio=False, extra_sip=["192.0.2.0/28"],
                                      extra_rtp=["192.0.2.0/28"])
    assert plan.sip_sources == plan.rtp_sources == (ipaddress.ip_network("192.0.2.0/28"),)
    assert "54.172.60.0" not in nftables_ruleset(plan)
