"""Authentication of recording sessions (pure).

A recording client proves who it is with a credential header (Twilio's SIPREC connector
sends a configured header name and value, e.g. ``X-Auth-Token: s3cret``), optionally from an
allowed source network.  The dialog-creating INVITE is checked before anything is allocated
for it; in-dialog requests are then bound to the dialog the authenticated INVITE created.

Secrets are compared in constant time and every configured token is compared on every
check, so neither the match position nor the token length leaks through timing.  No
credential value ever appears in an error: the reasons below name only what was wrong.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass, field

from srs.config import IpNetwork, ip_of
from srs.errors import Forbidden

__all__ = ["Authenticator"]


# A credential longer than this is refused before comparison (bounded work per request).
MAX_CREDENTIAL_BYTES = 1024


@dataclass(frozen=True)
class Authenticator:
    """Checks a request's credential header and source address.

    ``tokens`` empty means authentication is off (``srs serve --no-auth``): only the
    address allow-list, if any, applies.
    """

    header: str
    tokens: tuple[bytes, ...] = field(repr=False)
    networks: tuple[IpNetwork, ...] = ()

    @classmethod
    def from_strings(
        cls, header: str, tokens: Sequence[str], networks: Sequence[IpNetwork] = ()
    ) -> Authenticator:
        return cls(header, tuple(t.encode("utf-8") for t in tokens), tuple(networks))

    @property
    def enabled(self) -> bool:
        return bool(self.tokens)

    def check(self, credential: str | None, source_ip: str) -> None:
        """Raise :class:`Forbidden` unless ``source_ip`` is allowed and ``credential``
        (the header's value, or None when absent) matches a configured token."""
        if self.networks and not self._source_allowed(source_ip):
            raise Forbidden("Forbidden: source address not allowed")
        if not self.tokens:
            return
        if credential is None:
            raise Forbidden(f"Forbidden: missing {self.header}")
        if not self._credential_matches(credential):
            raise Forbidden(f"Forbidden: bad {self.header}")

    def vouches_for(self, credential: str | None, source_ip: str) -> bool:
        """Whether an in-dialog request from a host other than the one that created the
        dialog may act on it: its source is on the allow-list, or it carries a valid
        credential.  With neither configured (``--no-auth``), any host may."""
        if not self.tokens and not self.networks:
            return True
        if self.networks and self._source_allowed(source_ip):
            return True
        return bool(self.tokens) and credential is not None and self._credential_matches(
            credential)

    def _credential_matches(self, credential: str) -> bool:
        offered = credential.strip().encode("utf-8", "surrogateescape")
        if len(offered) > MAX_CREDENTIAL_BYTES:
            return False
        # Fixed-length digests are compared, so neither where the bytes differ nor the
        # token's length shows in the timing (compare_digest on inputs of different
        # lengths returns early); no short circuit over the configured tokens either.
        offered_digest = hashlib.sha256(offered).digest()
        matched = False
        for token in self.tokens:
            matched |= hmac.compare_digest(offered_digest, hashlib.sha256(token).digest())
        return matched

    def _source_allowed(self, source_ip: str) -> bool:
        address = ip_of(source_ip)
        return address is not None and any(address in network for network in self.networks)
