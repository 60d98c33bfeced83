import ipaddress

import pytest

from srs.config import AuthSettings
from srs.errors import Forbidden
from srs.sip.auth import Authenticator


def make(tokens: tuple[str, ...] = ("alpha", "beta"), cidrs: tuple[str, ...] = ()) -> Authenticator:
    networks = AuthSettings(tokens=tokens, allow_cidrs=cidrs).networks()
    return Authenticator.from_strings("X-Auth-Token", tokens, networks)


def test_each_rotated_token_is_accepted() -> None:
    auth = make()
    auth.check("alpha", "192.0.2.1")
    auth.check(" beta ", "192.0.2.1")


@pytest.mark.parametrize(
    ("credential", "reason"),
    [
        (None, "Forbidden: missing X-Auth-Token"),
        ("", "Forbidden: bad X-Auth-Token"),
        ("alph", "Forbidden: bad X-Auth-Token"),
        ("alphaa", "Forbidden: bad X-Auth-Token"),
        ("x" * 5000, "Forbidden: bad X-Auth-Token"),
    ],
)
def test_wrong_or_missing_credential_is_403(credential: str | None, reason: str) -> None:
    with pytest.raises(Forbidden) as info:
        make().check(credential, "192.0.2.1")
    assert info.value.status == 403
    assert info.value.reason == reason
    assert "alpha" not in info.value.reason and "beta" not in info.value.reason


def test_allow_list_with_twilio_preset() -> None:
    auth = make(cidrs=("twilio",))
    auth.check("alpha", "54.172.60.1")
    auth.check("alpha", "::ffff:54.244.51.2")  # IPv4-mapped on a dual-stack socket
    with pytest.raises(Forbidden, match="source address not allowed"):
        auth.check("alpha", "54.172.60.4")
    with pytest.raises(Forbidden, match="source address not allowed"):
        auth.check("alpha", "not-an-ip")


def test_source_is_checked_before_the_credential() -> None:
    with pytest.raises(Forbidden, match="source address not allowed"):
        make(cidrs=("10.0.0.0/8",)).check(None, "192.0.2.1")


def test_no_tokens_means_only_the_allow_list_applies() -> None:
    auth = Authenticator.from_strings("X-Auth-Token", (), (ipaddress.ip_network("127.0.0.0/8"),))
    assert not auth.enabled
    auth.check(None, "127.0.0.1")
    with pytest.raises(Forbidden):
        auth.check(None, "192.0.2.1")
