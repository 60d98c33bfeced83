"""SDES-SRTP for a recorder: choosing the answer's ``a=crypto`` and decrypting what arrives.

Three parts, all pure (no asyncio, no logging; time is passed in):

* :data:`SUITES` -- the SDES crypto suites srs can decrypt, with their key, salt and tag
  lengths and the libsrtp profile behind each (RFC 4568 §6.2, RFC 7714 §14.2).
* :func:`choose_answer_crypto` -- picks the offered ``a=crypto`` line srs accepts for an
  RTP/SAVP m-line and makes the answer's line with a fresh key of ours (RFC 4568 §7.1.2,
  §7.2); :func:`policy_decline_reason` applies the ``media.srtp`` setting to an m-line.
* :class:`SrtpReceiver` -- one libsrtp inbound context (any SSRC) for one key;
  :class:`SrtpInbound` holds the current and, for a grace period after a re-INVITE
  changed the key, the previous one (RFC 4568 §7.1.4).

Drop reasons (``RtpError.drop_reason``, counted with ``TrackTimeline.count_drop``):

``"srtp_auth"``
    the authentication tag does not verify (RFC 3711 §3.3 step 5; for GCM the AEAD tag,
    RFC 7714 §9.2): tampered, or protected with another key.
``"srtp_replay"``
    the packet index was already received or is behind the replay window (RFC 3711
    §3.3.2).  libsrtp checks replay *before* authentication, so any datagram that carries
    an index already received (a tampered copy too) counts here.
``"srtp_key_expired"``
    libsrtp's key usage limit (2^48 SRTP packets, RFC 3711 §9.2) is reached.
``"srtp_malformed"``
    anything else libsrtp refuses: shorter than a header and a tag, longer than
    :data:`MAX_SRTP_DATAGRAM_BYTES`, a header whose CSRC list or extension runs past the
    end, an SRTCP packet without its index.

The caller tells RTCP from RTP on a shared port by the second octet, which SRTP leaves
in the clear (RFC 5761 §4, :func:`srs.rtp.packet.is_rtcp`), and calls
:meth:`SrtpReceiver.unprotect_rtcp` for SRTCP (RFC 3711 §3.4).

Keys: a key never appears in the ``repr``/``str`` of any value here, nor in an exception
message.  The answer's key comes from :mod:`secrets`.
"""

from __future__ import annotations

import hmac
import importlib
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

import pylibsrtp

from srs.errors import NotAcceptableHere, RtpError, UsageError
from srs.sdp.crypto import CryptoAttribute, CryptoKeyParam

__all__ = [
    "SUITES",
    "SrtpSuite",
    "SrtpPolicy",
    "SRTP_POLICIES",
    "MAX_SRTP_DATAGRAM_BYTES",
    "native_unprotect",
    "DEFAULT_REPLAY_WINDOW_PACKETS",
    "AcceptedCrypto",
    "NoAcceptableCrypto",
    "policy_decline_reason",
    "choose_answer_crypto",
    "SrtpReceiver",
    "SrtpInbound",
]

_Policy = pylibsrtp.Policy


@dataclass(frozen=True, slots=True)
class SrtpSuite:
    """One SDES crypto suite srs decrypts.

    ``profile`` is the libsrtp profile (``pylibsrtp.Policy.SRTP_PROFILE_*``).  The tag
    lengths are those of the SRTP and the SRTCP authentication tags: the ``_32`` suite
    shortens only the SRTP one (RFC 4568 §6.2.2).
    """

    name: str
    profile: int
    master_key_bytes: int
    master_salt_bytes: int
    srtp_auth_tag_bytes: int
    srtcp_auth_tag_bytes: int

    @property
    def key_salt_bytes(self) -> int:
        """Length of the ``inline:`` key, master key then master salt (RFC 4568 §6.1)."""
        return self.master_key_bytes + self.master_salt_bytes


# Offered suites srs does not know, or libsrtp's profiles (and so pylibsrtp) do not cover,
# are declined line by line: AES_192_CM_* and AES_256_CM_* (RFC 6188), F8_128_HMAC_SHA1_80
# (RFC 4568 §6.2.3), and the NULL suites.
SUITES: Mapping[str, SrtpSuite] = MappingProxyType(
    {
        suite.name: suite
        for suite in (
            # RFC 4568 §6.2.1: AES-CM 128-bit key, 112-bit salt, 80-bit HMAC-SHA1 tag.
            SrtpSuite(
                "AES_CM_128_HMAC_SHA1_80", _Policy.SRTP_PROFILE_AES128_CM_SHA1_80, 16, 14, 10, 10
            ),
            # RFC 4568 §6.2.2: the same with a 32-bit SRTP tag; SRTCP keeps 80 bits.
            SrtpSuite(
                "AES_CM_128_HMAC_SHA1_32", _Policy.SRTP_PROFILE_AES128_CM_SHA1_32, 16, 14, 4, 10
            ),
            # RFC 7714 §14.2 (§12: 96-bit salt, §7.2: 16-octet AEAD tag).
            SrtpSuite("AEAD_AES_128_GCM", _Policy.SRTP_PROFILE_AEAD_AES_128_GCM, 16, 12, 16, 16),
            SrtpSuite("AEAD_AES_256_GCM", _Policy.SRTP_PROFILE_AEAD_AES_256_GCM, 32, 12, 16, 16),
        )
    }
)

SrtpPolicy = Literal["allow", "require", "off"]
SRTP_POLICIES: tuple[SrtpPolicy, ...] = ("allow", "require", "off")

# pylibsrtp works in a 1500-octet buffer; an Ethernet-MTU datagram is the most a peer sends.
MAX_SRTP_DATAGRAM_BYTES = 1500
# libsrtp's default replay window (RFC 3711 §3.3.2 asks for at least 64).
DEFAULT_REPLAY_WINDOW_PACKETS = 128
# libsrtp refuses windows of 0x8000 packets and more (srtp_rdbx_init).
MAX_REPLAY_WINDOW_PACKETS = 0x7FFF
# RFC 4568 §6.2.1 (and RFC 7714 §14.2): a master key protects at most 2^48 SRTP packets.
MAX_KEY_LIFETIME_PACKETS = 2**48
# Bounds on what a reason lists, so a hostile offer cannot grow the error.
_MAX_LISTED_LINES = 3
_MAX_SUITE_CHARS = 40


# -- the answer (RFC 4568 §7) ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AcceptedCrypto:
    """The ``a=crypto`` line srs accepted for one m-line, and what it needs to decrypt.

    ``answer`` goes into the answer SDP (same tag and suite, our key, RFC 4568 §7.1.2);
    ``inbound_key_salt`` is the offerer's key, for :class:`SrtpReceiver`.  repr and str
    never show either key.
    """

    suite: SrtpSuite
    inbound_key_salt: bytes
    replay_window_packets: int
    answer: CryptoAttribute

    @property
    def tag(self) -> int:
        return self.answer.tag

    def __repr__(self) -> str:
        return (
            f"AcceptedCrypto(tag={self.answer.tag}, suite={self.suite.name!r}, "
            f"inbound_key_salt=<{len(self.inbound_key_salt)} bytes redacted>, "
            f"replay_window_packets={self.replay_window_packets}, answer=<redacted>)"
        )

    __str__ = __repr__


class NoAcceptableCrypto(NotAcceptableHere):
    """No offered ``a=crypto`` line of an RTP/SAVP m-line is acceptable (488).

    ``declined`` holds ``(tag, why)`` per offered line, in the offer's order; neither part
    ever contains key material.  The message names the first few; ``reason`` (the SIP
    reason phrase) is that message cut to 120 characters.
    """

    def __init__(self, declined: tuple[tuple[int, str], ...]) -> None:
        if declined:
            listed = "; ".join(f"tag {tag}: {why}" for tag, why in declined[:_MAX_LISTED_LINES])
            more = len(declined) - _MAX_LISTED_LINES
            reason = f"no acceptable a=crypto ({listed}{f'; {more} more' if more > 0 else ''})"
        else:
            reason = "no a=crypto offered for RTP/SAVP"  # e.g. DTLS-SRTP, which srs lacks
        super().__init__(reason)
        self.declined = declined


def policy_decline_reason(secure: bool, policy: SrtpPolicy) -> str | None:
    """Why the ``media.srtp`` policy declines an m-line, or None when it allows it.

    ``secure`` is whether the m-line's profile is RTP/SAVP(F) (``MediaDescription.is_secure``).
    ``off`` declines SRTP m-lines; ``require`` declines plain RTP/AVP m-lines.  A declined
    m-line gets port 0 (RFC 3264 §6); an offer with nothing left is answered with 488 by
    :func:`srs.sdp.answer.build_answer`.
    """
    if policy == "allow":
        return None
    if policy == "off":
        return "SRTP is off (media.srtp)" if secure else None
    if policy == "require":
        return None if secure else "plain RTP refused (media.srtp is require)"
    raise UsageError(f"unknown SRTP policy {policy!r}")


def choose_answer_crypto(
    offered: Sequence[CryptoAttribute], *, previous: AcceptedCrypto | None = None
) -> AcceptedCrypto:
    """The first acceptable offered line, in the offerer's order (RFC 4568 §7.1.2, §7.2).

    A line is acceptable when srs knows its suite (:data:`SUITES`), it carries exactly one
    key of the suite's length without an MKI, its lifetime is at most 2^48 packets, and
    its session parameters are ones srs can honour (see :func:`_session_params`).

    The answer repeats the line's tag and suite with a fresh key of ours from
    :mod:`secrets`: srs never sends media, but RFC 4568 §7.1.2 requires the answerer's key.
    When ``previous`` (what this m-line accepted before) is the chosen line unchanged --
    same tag, suite and key, as in a session-timer refresh -- it is returned as is, so the
    answer keeps our key and the caller sees there is nothing to rekey (RFC 4568 §7.1.4).

    Raises :class:`NoAcceptableCrypto` (488) when no line is acceptable.
    """
    declined: list[tuple[int, str]] = []
    for attribute in offered:
        suite = _usable_suite(attribute)
        if isinstance(suite, str):
            declined.append((attribute.tag, suite))
            continue
        window = _session_params(attribute.session_params)
        if isinstance(window, str):
            declined.append((attribute.tag, window))
            continue
        key_salt = attribute.key_params[0].key_salt
        if previous is not None and _is_unchanged(previous, attribute, key_salt):
            return previous
        answer = CryptoAttribute(
            attribute.tag,
            suite.name,
            (CryptoKeyParam(secrets.token_bytes(suite.key_salt_bytes)),),
        )
        return AcceptedCrypto(suite, key_salt, window, answer)
    raise NoAcceptableCrypto(tuple(declined))


def _usable_suite(attribute: CryptoAttribute) -> SrtpSuite | str:
    """The line's suite when srs can use its key, or why the line is declined."""
    suite = SUITES.get(attribute.suite)
    if suite is None:
        return f"unsupported suite {attribute.suite[:_MAX_SUITE_CHARS]}"
    if len(attribute.key_params) != 1:
        # RFC 4568 §6.1: several keys in one line are told apart by their MKI.
        return "several keys (needs MKI)"
    key = attribute.key_params[0]
    if key.mki is not None:
        # pylibsrtp sets no MKI; a sender that adds MKI octets would fail authentication.
        return "MKI not supported"
    if len(key.key_salt) != suite.key_salt_bytes:
        return f"key is not {suite.key_salt_bytes} bytes"
    lifetime = key.lifetime_packets
    if lifetime is not None and not 1 <= lifetime <= MAX_KEY_LIFETIME_PACKETS:
        # RFC 4568 §6.2.1: the suite's maximum is 2^48.  A short lifetime is the sender's
        # business: it must rekey in time (RFC 4568 §6.1), so any lifetime up to that is fine.
        return "key lifetime out of range"
    return suite


def _session_params(params: Sequence[str]) -> int | str:
    """The replay window the session parameters ask for, or why they are declined.

    RFC 4568 §6.3:

    * ``KDR`` (§6.3.1) -- declined: libsrtp derives session keys once, at start.
    * ``UNENCRYPTED_SRTP``, ``UNENCRYPTED_SRTCP``, ``UNAUTHENTICATED_SRTP`` (§6.3.2-4) --
      declined: the libsrtp profiles always encrypt and authenticate, and a recorder that
      was asked for SRTP should not take cleartext silently.
    * ``FEC_ORDER``, ``FEC_KEY`` (§6.3.5-6) -- ignored: srs answers no FEC.
    * ``WSH`` (§6.3.7) -- the replay window hint, honoured within libsrtp's bounds.
    * an extension with a leading ``-`` (§9.2 ``srtp-session-extension``) -- ignored, as
      the ``-`` marks it optional; any other unknown parameter is declined.
    """
    window = DEFAULT_REPLAY_WINDOW_PACKETS
    for param in params:
        name, _, value = param.partition("=")
        if name in ("KDR", "UNENCRYPTED_SRTP", "UNENCRYPTED_SRTCP", "UNAUTHENTICATED_SRTP"):
            return f"{name} not supported"
        if name == "WSH":
            if not value.isdecimal() or len(value) > 9:
                return "malformed WSH"
            # Tolerated: a WSH under RFC 4568's minimum of 64 leaves our default window.
            window = min(max(int(value), DEFAULT_REPLAY_WINDOW_PACKETS), MAX_REPLAY_WINDOW_PACKETS)
        elif name not in ("FEC_ORDER", "FEC_KEY") and not name.startswith("-"):
            return "unknown session parameter"  # not echoed: it may carry anything
    return window


def _is_unchanged(previous: AcceptedCrypto, attribute: CryptoAttribute, key_salt: bytes) -> bool:
    return (
        previous.answer.tag == attribute.tag
        and previous.suite.name == attribute.suite
        and hmac.compare_digest(previous.inbound_key_salt, key_salt)
    )


# -- decryption (RFC 3711 §3.3, §3.4) ---------------------------------------------------------

# libsrtp's error strings (pylibsrtp.ERRORS) to drop reasons; any other is "srtp_malformed".
_DROP_REASONS = {
    "authentication failure": "srtp_auth",
    "replay check failed (bad index)": "srtp_replay",
    "replay check failed (index too old)": "srtp_replay",
    "packet index is too old to consider": "srtp_replay",
    "can't use key any more": "srtp_key_expired",
}


def _dropped(error: pylibsrtp.Error) -> RtpError:
    # libsrtp's messages are fixed strings from its error table: safe as the detail.
    message = str(error)
    return RtpError(_DROP_REASONS.get(message, "srtp_malformed"), message)


def _native() -> tuple[object, object] | None:
    """pylibsrtp's cffi module and libsrtp's functions inside it, when it is the libsrtp 2
    interface srs knows; ``None`` otherwise."""
    try:
        binding = importlib.import_module("pylibsrtp._binding")
        ffi, lib = binding.ffi, binding.lib
        if str(ffi.typeof(lib.srtp_unprotect)) != _UNPROTECT_TYPE:
            return None
    except (ImportError, AttributeError, TypeError):
        return None
    return ffi, lib


_UNPROTECT_TYPE = "<ctype 'srtp_err_status_t(*)(struct srtp_ctx_t_ *, void *, int *)'>"
_NATIVE = _native()


def native_unprotect() -> int:
    """The address of libsrtp's ``srtp_unprotect`` in pylibsrtp, or 0: the compiled receiver
    (srs/server/_rtprecv.c) decrypts with it on :attr:`SrtpReceiver.native_context`, the
    very context :meth:`SrtpReceiver.unprotect` uses, and leaves to it every packet libsrtp
    refuses (a refused packet changes nothing in libsrtp, RFC 3711 §3.3)."""
    if _NATIVE is None:
        return 0
    ffi, lib = _NATIVE
    return int(ffi.cast("uintptr_t", ffi.addressof(lib, "srtp_unprotect")))  # type: ignore[attr-defined]


def _native_context(session: pylibsrtp.Session) -> int:
    if _NATIVE is None:
        return 0
    ffi, _ = _NATIVE
    try:
        return int(ffi.cast("uintptr_t", session._srtp[0]))  # type: ignore[attr-defined]
    except (AttributeError, TypeError, IndexError):
        return 0


class SrtpReceiver:
    """One inbound SRTP/SRTCP crypto context for one master key, any SSRC.

    A libsrtp session with an ``ssrc_any_inbound`` template: the first packet of each
    SSRC that authenticates gets its own context, with its rollover counter (RFC 3711
    §3.3.1) and replay list (§3.3.2).  Packets must be ``bytes`` (what a socket returns).
    Stateful, so not a value; repr shows the suite only.
    """

    __slots__ = ("suite", "native_context", "_key_salt", "_session")

    def __init__(
        self,
        suite: SrtpSuite,
        key_salt: bytes,
        *,
        replay_window_packets: int = DEFAULT_REPLAY_WINDOW_PACKETS,
    ) -> None:
        if len(key_salt) != suite.key_salt_bytes:
            raise UsageError(f"{suite.name} needs a {suite.key_salt_bytes}-byte key")
        if not 64 <= replay_window_packets <= MAX_REPLAY_WINDOW_PACKETS:
            raise UsageError(f"replay window must be 64..{MAX_REPLAY_WINDOW_PACKETS} packets")
        policy = _Policy(
            key=bytes(key_salt), ssrc_type=_Policy.SSRC_ANY_INBOUND, srtp_profile=suite.profile
        )
        policy.window_size = replay_window_packets
        self.suite = suite
        self._key_salt = bytes(key_salt)
        self._session = pylibsrtp.Session(policy)
        # The libsrtp context, for the compiled receiver (0: not to be had).
        self.native_context = _native_context(self._session)

    @classmethod
    def from_accepted(cls, accepted: AcceptedCrypto) -> SrtpReceiver:
        return cls(
            accepted.suite,
            accepted.inbound_key_salt,
            replay_window_packets=accepted.replay_window_packets,
        )

    def uses_key(self, suite: SrtpSuite, key_salt: bytes) -> bool:
        """Whether this context decrypts with ``suite`` and ``key_salt`` (constant time)."""
        return suite.name == self.suite.name and hmac.compare_digest(self._key_salt, key_salt)

    def same_key(self, other: SrtpReceiver) -> bool:
        """Whether ``other`` decrypts with this suite and key."""
        return self.uses_key(other.suite, other._key_salt)

    # unprotect and unprotect_rtcp are spelled out, not shared through a helper: this is
    # the per-packet path (docs/architecture.md, "Hot path") and a helper call costs on
    # every packet.
    def unprotect(self, datagram: bytes) -> bytes:
        """The plain RTP packet inside an SRTP one.  Raises :class:`RtpError` (see module)."""
        if len(datagram) > MAX_SRTP_DATAGRAM_BYTES:
            raise RtpError("srtp_malformed", f"{len(datagram)} bytes")
        try:
            return self._session.unprotect(datagram)
        except pylibsrtp.Error as error:
            raise _dropped(error) from None

    def unprotect_rtcp(self, datagram: bytes) -> bytes:
        """The plain RTCP compound inside an SRTCP packet (RFC 3711 §3.4)."""
        if len(datagram) > MAX_SRTP_DATAGRAM_BYTES:
            raise RtpError("srtp_malformed", f"{len(datagram)} bytes")
        try:
            return self._session.unprotect_rtcp(datagram)
        except pylibsrtp.Error as error:
            raise _dropped(error) from None

    def __repr__(self) -> str:
        return f"SrtpReceiver(suite={self.suite.name!r}, key=<redacted>)"

    __str__ = __repr__


class SrtpInbound:
    """The inbound SRTP of one m-line across rekeying (RFC 4568 §7.1.4: no gap).

    After :meth:`rekey` the previous context still decrypts, so packets the SRC protects
    with the old key until our answer reaches it are not lost:

    * until the new key authenticates its first packet, for at most ``grace_s`` (default
      32 s: 64*T1, RFC 3261 Timer H, the longest the SRC may wait for a retransmitted
      2xx carrying our answer);
    * after that, ``overlap_s`` more (default 1 s) for old-key packets that were reordered
      behind the first new-key one.

    While both are held, the context expected to succeed is tried first, so a packet
    costs one decryption in the steady state.  When both refuse a packet the drop reason
    is ``srtp_replay`` if either saw its index before, else the newer context's reason.
    The previous context is released lazily, or by :meth:`handle_timer` at
    :meth:`next_deadline`.

    The new context starts its rollover counter at 0 (RFC 3711 §3.3.1), as a libsrtp
    sender that opens a new session for the new key does.  A sender that keeps its ROC
    across the rekey of a stream that has already wrapped would fail authentication:
    libsrtp can be told a stream's ROC, but pylibsrtp does not expose it.
    """

    __slots__ = ("_current", "_previous", "_previous_until", "_switched", "grace_s", "overlap_s")

    def __init__(
        self, receiver: SrtpReceiver, *, grace_s: float = 32.0, overlap_s: float = 1.0
    ) -> None:
        if grace_s < 0 or overlap_s < 0:
            raise UsageError("grace_s and overlap_s must not be negative")
        self.grace_s = grace_s
        self.overlap_s = overlap_s
        self._current = receiver
        self._previous: SrtpReceiver | None = None
        self._previous_until = 0.0
        self._switched = False  # the current key has authenticated a packet since rekey

    @property
    def current(self) -> SrtpReceiver:
        return self._current

    @property
    def previous(self) -> SrtpReceiver | None:
        return self._previous

    def rekey(self, receiver: SrtpReceiver, now: float) -> bool:
        """Make ``receiver`` current and keep the old one for the grace period.

        Returns False, and changes nothing, when ``receiver`` has the current suite and
        key: a new context for the same key would restart the rollover counter at 0 and
        lose a stream that has already wrapped (RFC 3711 §3.3.1).  A rekey during a grace
        period drops the oldest context.
        """
        if receiver.same_key(self._current):
            return False
        self._previous = self._current
        self._previous_until = now + self.grace_s
        self._current = receiver
        self._switched = False
        return True

    def next_deadline(self) -> float | None:
        return self._previous_until if self._previous is not None else None

    def handle_timer(self, now: float) -> None:
        if self._previous is not None and now >= self._previous_until:
            self._previous = None

    def unprotect(self, datagram: bytes, now: float) -> bytes:
        """Plain RTP from an SRTP packet protected with the current or the previous key."""
        if self._previous is None:
            return self._current.unprotect(datagram)
        return self._either(datagram, now, rtcp=False)

    def unprotect_rtcp(self, datagram: bytes, now: float) -> bytes:
        """Plain RTCP from an SRTCP packet protected with the current or the previous key."""
        if self._previous is None:
            return self._current.unprotect_rtcp(datagram)
        return self._either(datagram, now, rtcp=True)

    def _either(self, datagram: bytes, now: float, *, rtcp: bool) -> bytes:
        self.handle_timer(now)
        previous = self._previous
        current = self._current
        if previous is None:
            return current.unprotect_rtcp(datagram) if rtcp else current.unprotect(datagram)
        order = (current, previous) if self._switched else (previous, current)
        errors: list[RtpError] = []
        for receiver in order:
            try:
                plain = receiver.unprotect_rtcp(datagram) if rtcp else receiver.unprotect(datagram)
            except RtpError as error:
                errors.append(error)
                continue
            if receiver is current and not self._switched:
                self._switched = True
                self._previous_until = min(self._previous_until, now + self.overlap_s)
            return plain
        current_error = errors[order.index(current)]
        replay = next((e for e in errors if e.drop_reason == "srtp_replay"), None)
        raise replay or current_error

    def __repr__(self) -> str:
        return (
            f"SrtpInbound(current={self._current!r}, previous={self._previous!r}, "
            f"previous_until={self._previous_until if self._previous else None!r})"
        )

    __str__ = __repr__
