"""SDES ``a=crypto`` attributes (RFC 4568) parsed into frozen values that never show keys.

:class:`CryptoAttribute` is what an RTP/SAVP m-line offers and what the answer carries back
(RFC 4568 §7.1).  ``bytes(x)`` is the wire form, keys included, and is only for the SDP
itself; ``repr`` and ``str`` redact every key so that logging a value cannot leak it.
"""

from __future__ import annotations

import binascii
import re
from dataclasses import dataclass

from srs.errors import SdpError

__all__ = ["CryptoAttribute", "CryptoKeyParam", "MAX_CRYPTO_KEY_PARAMS"]

MAX_CRYPTO_KEY_PARAMS = 16

_TOKEN_RE = re.compile(r"[!#$%&'*+.^_`{|}~0-9A-Za-z-]+")

# RFC 4568 §6.2 and RFC 7714 §12: master key + master salt lengths per crypto suite.
_KEY_SALT_BYTES = {
    "AES_CM_128_HMAC_SHA1_80": 30,
    "AES_CM_128_HMAC_SHA1_32": 30,
    "F8_128_HMAC_SHA1_80": 30,
    "AES_192_CM_HMAC_SHA1_80": 38,
    "AES_192_CM_HMAC_SHA1_32": 38,
    "AES_256_CM_HMAC_SHA1_80": 46,
    "AES_256_CM_HMAC_SHA1_32": 46,
    "AEAD_AES_128_GCM": 28,
    "AEAD_AES_256_GCM": 44,
}
# RFC 4568 §9.1: lifetime ["2^"] 1*DIGIT, MKI 1*DIGIT ":" 1*3DIGIT.
_LIFETIME_RE = re.compile(r"(2\^)?([0-9]{1,20})")
_MKI_RE = re.compile(r"([0-9]{1,20}):([0-9]{1,3})")
_BASE64_RE = re.compile(r"[A-Za-z0-9+/]+={0,2}")


@dataclass(frozen=True, slots=True)
class CryptoKeyParam:
    """One ``inline:<key||salt>[|lifetime][|MKI:length]`` key parameter (RFC 4568 §9.1).

    ``key_salt`` is the master key followed by the master salt.  ``lifetime_packets`` is
    the SRTP master key lifetime in packets; ``mki`` / ``mki_length_bytes`` are present
    together or not at all.  repr and str never show the key.
    """

    key_salt: bytes
    lifetime_packets: int | None = None
    mki: int | None = None
    mki_length_bytes: int | None = None

    @classmethod
    def parse(cls, text: str) -> CryptoKeyParam:
        method, colon, info = text.partition(":")
        if not colon or method != "inline":
            raise SdpError("a=crypto key method is not inline")
        key_text, *rest = info.split("|")
        if len(rest) > 2 or not _BASE64_RE.fullmatch(key_text):
            raise SdpError("a=crypto has a malformed inline key")
        # Tolerated: base64 without its "=" padding; the key length check still applies.
        try:
            key_salt = binascii.a2b_base64(key_text + "=" * (-len(key_text) % 4))
        except binascii.Error:
            raise SdpError("a=crypto inline key is not base64") from None
        lifetime_packets = mki = mki_length = None
        for piece in rest:
            if (found := _MKI_RE.fullmatch(piece)) and mki is None:
                mki, mki_length = int(found.group(1)), int(found.group(2))
                if not 1 <= mki_length <= 128:
                    raise SdpError("a=crypto MKI length out of range")
            elif (found := _LIFETIME_RE.fullmatch(piece)) and lifetime_packets is None and (
                mki is None
            ):
                exponent_or_count = int(found.group(2))
                if found.group(1):
                    if exponent_or_count > 64:
                        raise SdpError("a=crypto key lifetime out of range")
                    lifetime_packets = 2**exponent_or_count
                else:
                    lifetime_packets = exponent_or_count
            else:
                raise SdpError("a=crypto has a malformed key lifetime or MKI")
        return cls(key_salt, lifetime_packets, mki, mki_length)

    def __bytes__(self) -> bytes:
        text = "inline:" + binascii.b2a_base64(self.key_salt, newline=False).decode("ascii")
        if self.lifetime_packets is not None:
            lifetime = self.lifetime_packets
            exponent = lifetime.bit_length() - 1
            text += f"|2^{exponent}" if lifetime > 1 and lifetime == 1 << exponent else (
                f"|{lifetime}"
            )
        if self.mki is not None:
            text += f"|{self.mki}:{self.mki_length_bytes}"
        return text.encode("ascii")

    def __repr__(self) -> str:
        return (
            f"CryptoKeyParam(key_salt=<{len(self.key_salt)} bytes redacted>, "
            f"lifetime_packets={self.lifetime_packets!r}, mki={self.mki!r}, "
            f"mki_length_bytes={self.mki_length_bytes!r})"
        )

    __str__ = __repr__


@dataclass(frozen=True, slots=True)
class CryptoAttribute:
    """``a=crypto:<tag> <crypto-suite> <key-params> [<session-params>]`` (RFC 4568 §9.1).

    ``bytes(x)`` is the attribute value with the keys (for the answer SDP only); repr and
    str redact the keys so that a logged value never leaks them.
    """

    tag: int
    suite: str
    key_params: tuple[CryptoKeyParam, ...]
    session_params: tuple[str, ...] = ()

    @classmethod
    def parse(cls, value: str) -> CryptoAttribute:
        fields = value.split()
        if len(fields) < 3:
            raise SdpError("a=crypto needs a tag, a suite and key parameters")
        tag_text, suite, key_text, *session_params = fields
        # RFC 4568 §9.1: tag = 1*9DIGIT.
        if not re.fullmatch(r"[0-9]{1,9}", tag_text):
            raise SdpError("a=crypto tag is not 1-9 digits")
        if not _TOKEN_RE.fullmatch(suite):
            raise SdpError("a=crypto suite is malformed")
        pieces = key_text.split(";")
        if len(pieces) > MAX_CRYPTO_KEY_PARAMS:
            raise SdpError("a=crypto has too many keys")
        key_params = tuple(CryptoKeyParam.parse(piece) for piece in pieces)
        expected_bytes = _KEY_SALT_BYTES.get(suite)
        for key in key_params:
            if expected_bytes is not None and len(key.key_salt) != expected_bytes:
                raise SdpError(f"a=crypto key for {suite} is not {expected_bytes} bytes")
        return cls(int(tag_text), suite, key_params, tuple(session_params))

    @property
    def key_salt_bytes(self) -> int | None:
        """The key||salt length the suite needs, None for a suite srs does not know."""
        return _KEY_SALT_BYTES.get(self.suite)

    def __bytes__(self) -> bytes:
        keys = b";".join(bytes(key) for key in self.key_params)
        text = f"{self.tag} {self.suite} ".encode("ascii") + keys
        for param in self.session_params:
            text += b" " + param.encode("utf-8")
        return text

    def __repr__(self) -> str:
        # Session parameters are redacted too: FEC_KEY (RFC 4568 §6.3.6) carries a key.
        return (
            f"CryptoAttribute(tag={self.tag!r}, suite={self.suite!r}, "
            f"key_params=<{len(self.key_params)} redacted>, "
            f"session_params=<{len(self.session_params)} redacted>)"
        )

    __str__ = __repr__
