"""Which source addresses a stream takes RTP from (srs/rtp/sources.py)."""

from __future__ import annotations

import ipaddress

import pytest

from srs.errors import UsageError
from srs.rtp.sources import DEFAULT_POLICY, MAX_REMEMBERED, MediaSources, SourcePolicy, ip_of

TWILIO_MEDIA = (ipaddress.ip_network("168.86.128.0/18"),)


def sources(policy: SourcePolicy = DEFAULT_POLICY, *, offer: str | None = "192.0.2.10",
            signalling: str | None = "198.51.100.1") -> MediaSources:
    return MediaSources(policy, offer_host=offer, signalling_host=signalling)


def test_by_default_the_offer_and_the_signalling_source_are_accepted() -> None:
    s = sources()
    assert s.accepts("192.0.2.10") and s.accepts("198.51.100.1")
    assert not s.accepts("192.0.2.11") and not s.accepts("203.0.113.9")


@pytest.mark.parametrize(("names", "offer_ok", "signalling_ok", "other_ok"), [
    (["offer"], True, False, False),
    (["signalling"], False, True, False),
    (["offer", "signalling"], True, True, False),
    (["any"], True, True, True),
    ([], False, False, False),
])
def test_each_policy_accepts_what_it_names(names: list[str], offer_ok: bool,
                                           signalling_ok: bool, other_ok: bool) -> None:
    s = sources(SourcePolicy.from_names(names))
    assert (s.accepts("192.0.2.10"), s.accepts("198.51.100.1"), s.accepts("203.0.113.9")) == (
        offer_ok, signalling_ok, other_ok)


def test_allow_cidrs_add_to_any_policy() -> None:
    s = sources(SourcePolicy.from_names([], TWILIO_MEDIA))
    assert s.accepts("168.86.128.1") and s.accepts("168.86.191.254")
    assert not s.accepts("168.86.192.0") and not s.accepts("192.0.2.10")


def test_addresses_compare_as_ip_addresses() -> None:
    s = sources(offer="2001:db8::10", signalling="::ffff:198.51.100.1")
    assert s.accepts("198.51.100.1") and s.accepts("::ffff:198.51.100.1")
    assert s.accepts("2001:DB8:0::10")
    assert not s.accepts("2001:db8::11")


def test_host_names_and_the_unspecified_address_name_no_source() -> None:
    for offer in ("0.0.0.0", "::", "media.example.com", None):
        s = sources(offer=offer)
        assert not s.accepts("0.0.0.0") and not s.accepts("media.example.com")
        assert s.accepts("198.51.100.1")  # the signalling source still is
    assert ip_of("media.example.com") is None and ip_of("") is None
    assert ip_of("fe80::1%eth0") == ipaddress.ip_address("fe80::1")


def test_a_new_offer_replaces_the_old_address() -> None:
    s = sources()
    assert s.accepts("192.0.2.10")
    s.offer("192.0.2.20")
    assert s.accepts("192.0.2.20") and not s.accepts("192.0.2.10")
    assert s.accepts("198.51.100.1")


def test_verdicts_are_remembered_for_a_bounded_number_of_hosts() -> None:
    s = sources()
    for i in range(MAX_REMEMBERED * 4):
        assert not s.accepts(f"10.0.{i // 256}.{i % 256}")
    assert len(s._known) == MAX_REMEMBERED
    assert s.accepts("192.0.2.10") and not s.accepts("10.9.9.9")


def test_unknown_policy_names_are_a_usage_error() -> None:
    with pytest.raises(UsageError):
        SourcePolicy.from_names(["offer", "sdp"])
