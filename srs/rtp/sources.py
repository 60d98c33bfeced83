"""Which source addresses a stream takes RTP from (pure: no I/O, no clock).

RTP over UDP carries no proof of who sent it (RFC 3550 §9 leaves that to encryption):
without a check, whoever sends to a stream's port first would be recorded.  A stream
therefore accepts media only from the addresses its call names (``media.source``):

* ``offer`` -- the connection address of the m-line in the latest offer (its own ``c=``
  line, else the session's; RFC 4566 §5.7).  A host name there is never resolved and
  counts as no address, as does the unspecified address (``0.0.0.0``, ``::``: hold, or
  a client that does not know its own address, INTEROP.md "SDP").
* ``signalling`` -- the address the dialog-creating INVITE came from (an SBC that sends
  signalling and media from one address, whatever its SDP says).
* ``any`` -- every address (no check; the latch alone decides).

plus every address in ``media.allow_cidrs`` (``twilio`` expands to Twilio's media range).
A packet from elsewhere is dropped and counted (``foreign_source``) before it can latch.

Addresses are compared as IP addresses, not text: an IPv4 source seen through a dual-stack
socket (``::ffff:192.0.2.1``) is the IPv4 address.  Each stream remembers its verdicts for
at most :data:`MAX_REMEMBERED` source hosts, so a flood from many addresses costs one parse
per packet and no memory beyond that.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from srs.config import IpAddress, IpNetwork, ip_of
from srs.errors import UsageError

__all__ = ["SOURCE_KINDS", "MAX_REMEMBERED", "SourcePolicy", "DEFAULT_POLICY", "MediaSources",
           "ip_of"]

SOURCE_KINDS = ("offer", "signalling", "any")
MAX_REMEMBERED = 64

@dataclass(frozen=True, slots=True)
class SourcePolicy:
    """``media.source`` and ``media.allow_cidrs``, as the recording core reads them."""

    offer: bool = True
    signalling: bool = True
    any: bool = False
    networks: tuple[IpNetwork, ...] = ()

    @classmethod
    def from_names(cls, names: Iterable[str], networks: Iterable[IpNetwork] = ()) -> SourcePolicy:
        chosen = {name.lower() for name in names}
        unknown = chosen - set(SOURCE_KINDS)
        if unknown:
            raise UsageError(f"media sources {sorted(unknown)}: not one of {SOURCE_KINDS}")
        return cls(offer="offer" in chosen, signalling="signalling" in chosen,
                   any="any" in chosen, networks=tuple(networks))


# ``media.source``'s default: the offer's address and the signalling source.
DEFAULT_POLICY = SourcePolicy()


class MediaSources:
    """One stream's accepted source addresses; :meth:`accepts` is asked for each packet
    from a source the stream has not latched onto."""

    __slots__ = ("policy", "_addresses", "_signalling", "_offered", "_known")

    def __init__(self, policy: SourcePolicy, *, offer_host: str | None,
                 signalling_host: str | None) -> None:
        self.policy = policy
        self._signalling = ip_of(signalling_host) if policy.signalling else None
        self._addresses: frozenset[IpAddress] = frozenset()
        self._known: dict[str, bool] = {}  # source host text -> verdict (bounded)
        self._offered: IpAddress | None = None
        self.offer(offer_host)

    def offer(self, host: str | None) -> None:
        """A new offer names ``host`` as the m-line's connection address: it replaces the
        previous offer's.  An offer without a usable address (RFC 3264 §8.4 hold with
        ``c=0.0.0.0``, a host name, none at all) keeps the previous one: the sender an
        authenticated party named before is still the sender."""
        offered = ip_of(host) if self.policy.offer else None
        if offered is None and self.policy.offer:
            offered = self._offered
        self._offered = offered
        found = {self._signalling, offered}
        self._addresses = frozenset(a for a in found if a is not None)
        self._known = {}

    def accepts(self, host: str) -> bool:
        if self.policy.any:
            return True
        verdict = self._known.get(host)
        if verdict is None:
            address = ip_of(host)
            verdict = address is not None and (
                address in self._addresses
                or any(address in network for network in self.policy.networks))
            if len(self._known) < MAX_REMEMBERED:
                self._known[host] = verdict
        return verdict
