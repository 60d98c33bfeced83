"""SDES-SRTP: answer crypto choice, policy, and decryption with pylibsrtp as the sender."""

from __future__ import annotations

import base64
import struct
from pathlib import Path

import pylibsrtp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from srs.errors import NotAcceptableHere, RtpError, UsageError
from srs.rtp.packet import RtcpCompound, RtpPacket
from srs.rtp.srtp import (
    DEFAULT_REPLAY_WINDOW_PACKETS,
    SUITES,
    AcceptedCrypto,
    NoAcceptableCrypto,
    SrtpInbound,
    SrtpReceiver,
    SrtpSuite,
    choose_answer_crypto,
    policy_decline_reason,
)
from srs.rtp.track import TrackTimeline
from srs.sdp.answer import build_answer
from srs.sdp.crypto import CryptoAttribute, CryptoKeyParam
from srs.sdp.description import SessionDescription

SDP_DATA = Path(__file__).parent.parent / "data" / "sdp"
SUITE_NAMES = sorted(SUITES)
SSRC = 0x11223344


def key_for(suite: SrtpSuite, fill: int) -> bytes:
    """A recognisable test key: bytes fill, fill+1, ... (mod 256)."""
    return bytes((fill + i) % 256 for i in range(suite.key_salt_bytes))


class Sender:
    """An SRC's SRTP sender: plain RTP/RTCP protected by pylibsrtp (libsrtp)."""

    def __init__(self, suite: SrtpSuite, key_salt: bytes, *, first_seq: int = 0) -> None:
        policy = pylibsrtp.Policy(
            key=key_salt,
            ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND,
            srtp_profile=suite.profile,
        )
        self.session = pylibsrtp.Session(policy)
        self.seq = first_seq

    def rtp(self, payload: bytes, *, ssrc: int = SSRC) -> tuple[bytes, bytes]:
        """(plain, protected) for the next sequence number (wrapping at 65536)."""
        seq = self.seq % 65536
        plain = bytes(RtpPacket(0, seq, 160 * self.seq % 2**32, ssrc, payload))
        self.seq += 1
        return plain, self.session.protect(plain)

    def rtcp(self, sender_octets: int) -> tuple[bytes, bytes]:
        # RFC 3550 §6.4.1 sender report without report blocks: 6 words after the header.
        plain = struct.pack("!BBHIIIIII", 0x80, 200, 6, SSRC, 1, 2, 3, 4, sender_octets)
        return plain, self.session.protect_rtcp(plain)


def flip(data: bytes, index: int) -> bytes:
    return data[:index] + bytes((data[index] ^ 0x01,)) + data[index + 1 :]


def drop_reason(call: object, *args: object) -> str:
    with pytest.raises(RtpError) as caught:
        call(*args)  # type: ignore[operator]
    return caught.value.drop_reason


# -- the suite table --------------------------------------------------------------------------


@pytest.mark.parametrize("name", SUITE_NAMES)
def test_suite_lengths_match_libsrtp_and_the_sdp_parser(name: str) -> None:
    suite = SUITES[name]
    lib = pylibsrtp.lib
    assert lib.srtp_profile_get_master_key_length(suite.profile) == suite.master_key_bytes
    assert lib.srtp_profile_get_master_salt_length(suite.profile) == suite.master_salt_bytes
    offered = CryptoAttribute(1, name, (CryptoKeyParam(bytes(suite.key_salt_bytes)),))
    assert offered.key_salt_bytes == suite.key_salt_bytes
    # The tag lengths, measured: SRTP adds the tag; SRTCP adds the E bit + index and its tag.
    sender = Sender(suite, key_for(suite, 1))
    plain, protected = sender.rtp(b"x" * 160)
    assert len(protected) - len(plain) == suite.srtp_auth_tag_bytes
    plain, protected = sender.rtcp(0)
    assert len(protected) - len(plain) == 4 + suite.srtcp_auth_tag_bytes


def test_the_four_suites_of_the_issue() -> None:
    assert [(s.name, s.key_salt_bytes, s.srtp_auth_tag_bytes) for s in SUITES.values()] == [
        ("AES_CM_128_HMAC_SHA1_80", 30, 10),
        ("AES_CM_128_HMAC_SHA1_32", 30, 4),
        ("AEAD_AES_128_GCM", 28, 16),
        ("AEAD_AES_256_GCM", 44, 16),
    ]


# -- policy and answer crypto -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("secure", "policy", "reason"),
    [
        (True, "allow", None),
        (False, "allow", None),
        (True, "require", None),
        (False, "require", "plain RTP refused (media.srtp is require)"),
        (True, "off", "SRTP is off (media.srtp)"),
        (False, "off", None),
    ],
)
def test_policy_decline_reason(secure: bool, policy: str, reason: str | None) -> None:
    assert policy_decline_reason(secure, policy) == reason  # type: ignore[arg-type]


def test_unknown_policy_is_a_usage_error() -> None:
    with pytest.raises(UsageError):
        policy_decline_reason(True, "maybe")  # type: ignore[arg-type]


CM80 = SUITES["AES_CM_128_HMAC_SHA1_80"]
OFFER_KEY = key_for(CM80, 100)


def param_offer(*session_params: str) -> CryptoAttribute:
    """Tag 1, AES_CM_128_HMAC_SHA1_80, OFFER_KEY, with these session parameters."""
    return offer(1, "AES_CM_128_HMAC_SHA1_80", OFFER_KEY, *session_params)


def offer(
    tag: int = 1,
    suite: str = "AES_CM_128_HMAC_SHA1_80",
    key: bytes = OFFER_KEY,
    *session_params: str,
    lifetime: int | None = None,
    mki: int | None = None,
) -> CryptoAttribute:
    key_param = CryptoKeyParam(key, lifetime, mki, None if mki is None else 1)
    return CryptoAttribute(tag, suite, (key_param,), session_params)


def test_answer_has_same_tag_and_suite_and_a_fresh_key_of_ours() -> None:
    accepted = choose_answer_crypto([offer(7)])
    answer = accepted.answer
    assert (answer.tag, answer.suite, accepted.tag) == (7, "AES_CM_128_HMAC_SHA1_80", 7)
    assert accepted.suite is CM80
    assert accepted.inbound_key_salt == OFFER_KEY
    assert accepted.replay_window_packets == DEFAULT_REPLAY_WINDOW_PACKETS
    [ours] = answer.key_params
    assert len(ours.key_salt) == 30 and ours.key_salt != OFFER_KEY
    assert (ours.lifetime_packets, ours.mki, answer.session_params) == (None, None, ())
    assert choose_answer_crypto([offer(7)]).answer.key_params[0].key_salt != ours.key_salt
    # The answer's wire form parses back to itself.
    assert CryptoAttribute.parse(bytes(answer).decode("ascii")) == answer


def test_mki_only_offer_is_488_without_key_material() -> None:
    with pytest.raises(NoAcceptableCrypto) as caught:
        choose_answer_crypto([offer(1, mki=1), offer(2, "AEAD_AES_128_GCM", bytes(28), mki=2)])
    error = caught.value
    assert isinstance(error, NotAcceptableHere) and error.status == 488
    assert error.declined == ((1, "MKI not supported"), (2, "MKI not supported"))
    assert error.reason == (
        "no acceptable a=crypto (tag 1: MKI not supported; tag 2: MKI not supported)"
    )


def test_no_crypto_lines_is_488() -> None:
    with pytest.raises(NoAcceptableCrypto) as caught:
        choose_answer_crypto([])
    assert caught.value.reason == "no a=crypto offered for RTP/SAVP"


@pytest.mark.parametrize(
    ("unusable", "why"),
    [
        (offer(1, "F8_128_HMAC_SHA1_80"), "unsupported suite F8_128_HMAC_SHA1_80"),
        (
            offer(1, "AES_256_CM_HMAC_SHA1_80", bytes(46)),
            "unsupported suite AES_256_CM_HMAC_SHA1_80",
        ),
        (offer(1, mki=5), "MKI not supported"),
        (offer(1, key=bytes(29)), "key is not 30 bytes"),
        (offer(1, lifetime=0), "key lifetime out of range"),
        (offer(1, lifetime=2**49), "key lifetime out of range"),
        (param_offer("UNENCRYPTED_SRTP"), "UNENCRYPTED_SRTP not supported"),
        (param_offer("UNENCRYPTED_SRTCP"), "UNENCRYPTED_SRTCP not supported"),
        (param_offer("UNAUTHENTICATED_SRTP"), "UNAUTHENTICATED_SRTP not supported"),
        (param_offer("KDR=1"), "KDR not supported"),
        (param_offer("WSH=x"), "malformed WSH"),
        (param_offer("SECRET=abc"), "unknown session parameter"),
        (
            CryptoAttribute(1, "AES_CM_128_HMAC_SHA1_80", (CryptoKeyParam(OFFER_KEY),) * 2),
            "several keys (needs MKI)",
        ),
    ],
)
def test_first_line_unusable_second_is_chosen(unusable: CryptoAttribute, why: str) -> None:
    second_key = key_for(SUITES["AEAD_AES_128_GCM"], 7)
    accepted = choose_answer_crypto([unusable, offer(2, "AEAD_AES_128_GCM", second_key)])
    assert (accepted.tag, accepted.suite.name) == (2, "AEAD_AES_128_GCM")
    assert accepted.inbound_key_salt == second_key
    with pytest.raises(NoAcceptableCrypto) as caught:
        choose_answer_crypto([unusable])
    assert caught.value.declined == ((1, why),)


@pytest.mark.parametrize(
    ("params", "lifetime", "window"),
    [
        ((), 2**48, 128),
        (("WSH=256",), 1, 256),
        (("WSH=10",), None, 128),  # under RFC 4568's minimum: our default stays
        (("WSH=999999999",), None, 0x7FFF),
        (("FEC_ORDER=SRTP_FEC", "FEC_KEY=inline:abc", "-X_VENDOR=1"), 2**31, 128),
    ],
)
def test_accepted_session_params_and_lifetimes(
    params: tuple[str, ...], lifetime: int | None, window: int
) -> None:
    attribute = offer(3, "AES_CM_128_HMAC_SHA1_80", OFFER_KEY, *params, lifetime=lifetime)
    accepted = choose_answer_crypto([attribute])
    assert (accepted.tag, accepted.replay_window_packets) == (3, window)
    assert accepted.answer.session_params == ()


def test_reasons_list_at_most_four_lines() -> None:
    lines = [offer(tag, mki=1) for tag in range(1, 8)]
    with pytest.raises(NoAcceptableCrypto) as caught:
        choose_answer_crypto(lines)
    message = str(caught.value)
    assert message == (
        "no acceptable a=crypto (tag 1: MKI not supported; tag 2: MKI not supported; "
        "tag 3: MKI not supported; 4 more)"
    )
    assert caught.value.reason == message[:120]
    assert len(caught.value.declined) == 7


def test_unchanged_offer_keeps_previous_answer_and_new_key_does_not() -> None:
    first = choose_answer_crypto([offer(1)])
    assert choose_answer_crypto([offer(1)], previous=first) is first
    rekeyed = choose_answer_crypto([offer(1, key=key_for(CM80, 5))], previous=first)
    assert rekeyed is not first and rekeyed.answer != first.answer
    other_tag = choose_answer_crypto([offer(2)], previous=first)
    assert other_tag is not first and other_tag.tag == 2


def test_offer_file_to_answer_sdp() -> None:
    """savp_crypto.sdp: m-line 0 offers tag 1 (80, lifetime 2^31) then tag 2 (MKI)."""
    sdp = SessionDescription.parse((SDP_DATA / "savp_crypto.sdp").read_bytes())
    chosen = [choose_answer_crypto(media.crypto) for media in sdp.media]
    assert [(c.tag, c.suite.name) for c in chosen] == [(1, "AES_CM_128_HMAC_SHA1_80")] * 2
    assert chosen[0].inbound_key_salt == base64.b64decode(
        "PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR"
    )
    with pytest.raises(NoAcceptableCrypto):
        choose_answer_crypto(sdp.media[0].crypto[1:])  # the MKI line alone
    answer = build_answer(
        sdp,
        origin_username="srs",
        origin_session_id="1",
        origin_session_version=1,
        media_address="192.0.2.1",
        local_ports=[40000, 40002],
        answer_crypto=[c.answer for c in chosen],
    )
    body = bytes(answer).decode("ascii")
    for c in chosen:
        ours = base64.b64encode(c.answer.key_params[0].key_salt).decode("ascii")
        assert f"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{ours}\r\n" in body


# -- decryption -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", SUITE_NAMES)
def test_round_trip_exact_payloads(name: str) -> None:
    suite = SUITES[name]
    key = key_for(suite, 1)
    sender, receiver = Sender(suite, key, first_seq=1000), SrtpReceiver(suite, key)
    for i in range(50):
        payload = bytes((i + j) % 256 for j in range(i * 3))  # 0..147 octets, incl. empty
        plain, protected = sender.rtp(payload)
        assert protected != plain
        decrypted = receiver.unprotect(protected)
        assert decrypted == plain
        packet = RtpPacket.parse(decrypted)
        assert (packet.sequence_number, packet.ssrc, packet.payload) == (1000 + i, SSRC, payload)


@pytest.mark.parametrize("name", SUITE_NAMES)
def test_tampered_packets_fail_authentication(name: str) -> None:
    suite = SUITES[name]
    key = key_for(suite, 1)
    sender, receiver = Sender(suite, key), SrtpReceiver(suite, key)
    receiver.unprotect(sender.rtp(b"a" * 160)[1])
    _, protected = sender.rtp(b"b" * 160)
    assert drop_reason(receiver.unprotect, flip(protected, 20)) == "srtp_auth"  # payload
    assert drop_reason(receiver.unprotect, flip(protected, len(protected) - 1)) == "srtp_auth"
    assert drop_reason(receiver.unprotect, flip(protected, 1)) == "srtp_auth"  # header (PT)
    # The failures left no trace: the untouched packet still decrypts.
    assert RtpPacket.parse(receiver.unprotect(protected)).payload == b"b" * 160


@pytest.mark.parametrize("name", SUITE_NAMES)
def test_replayed_packets_are_dropped_as_replay(name: str) -> None:
    suite = SUITES[name]
    key = key_for(suite, 1)
    sender, receiver = Sender(suite, key), SrtpReceiver(suite, key)
    packets = [sender.rtp(i.to_bytes(2, "big") * 10)[1] for i in range(300)]
    receiver.unprotect(packets[0])
    assert drop_reason(receiver.unprotect, packets[0]) == "srtp_replay"
    for protected in packets[1:]:
        receiver.unprotect(protected)
    # Inside the window (already seen) and behind it (index too old).
    assert drop_reason(receiver.unprotect, packets[250]) == "srtp_replay"
    assert drop_reason(receiver.unprotect, packets[10]) == "srtp_replay"


@pytest.mark.parametrize("name", SUITE_NAMES)
def test_wrong_key_fails_authentication(name: str) -> None:
    suite = SUITES[name]
    sender = Sender(suite, key_for(suite, 1))
    receiver = SrtpReceiver(suite, key_for(suite, 2))
    assert drop_reason(receiver.unprotect, sender.rtp(b"x" * 160)[1]) == "srtp_auth"
    assert drop_reason(receiver.unprotect_rtcp, sender.rtcp(1)[1]) == "srtp_auth"


def test_wrong_suite_same_key_fails_authentication() -> None:
    key = key_for(CM80, 1)
    sender = Sender(SUITES["AES_CM_128_HMAC_SHA1_32"], key)
    receiver = SrtpReceiver(CM80, key)
    assert drop_reason(receiver.unprotect, sender.rtp(b"x" * 160)[1]) == "srtp_auth"


@pytest.mark.parametrize("name", SUITE_NAMES)
def test_malformed_datagrams(name: str) -> None:
    suite = SUITES[name]
    key = key_for(suite, 1)
    sender, receiver = Sender(suite, key), SrtpReceiver(suite, key)
    _, protected = sender.rtp(b"x" * 160)
    for short in (b"", protected[:5], protected[:12]):
        assert drop_reason(receiver.unprotect, short) == "srtp_malformed"
    # The boundary: a header and one octet less than a tag is malformed; a whole tag is
    # checked (and fails).
    header = protected[:12]
    too_short = header + bytes(suite.srtp_auth_tag_bytes - 1)
    assert drop_reason(receiver.unprotect, too_short) == "srtp_malformed"
    assert drop_reason(receiver.unprotect, too_short + b"\0") == "srtp_auth"
    assert drop_reason(receiver.unprotect, protected + bytes(1500)) == "srtp_malformed"
    assert drop_reason(receiver.unprotect_rtcp, b"\x80\xc8\x00\x01") == "srtp_malformed"
    assert drop_reason(receiver.unprotect_rtcp, bytes(1501)) == "srtp_malformed"


@settings(max_examples=150, deadline=None)
@given(data=st.binary(max_size=200), rtcp=st.booleans())
def test_any_bytes_are_only_dropped(data: bytes, rtcp: bool) -> None:
    receiver = SrtpReceiver(CM80, key_for(CM80, 1))
    call = receiver.unprotect_rtcp if rtcp else receiver.unprotect
    reason = drop_reason(call, data)
    assert reason in ("srtp_auth", "srtp_malformed")


@pytest.mark.parametrize("name", SUITE_NAMES)
def test_sequence_wrap_keeps_decrypting(name: str) -> None:
    """RFC 3711 §3.3.1: the rollover counter follows the 16-bit wrap, on both sides."""
    suite = SUITES[name]
    key = key_for(suite, 9)
    sender, receiver = Sender(suite, key, first_seq=65000), SrtpReceiver(suite, key)
    seqs = []
    for i in range(1100):  # 65000 .. 66099: wraps after 535 packets
        plain, protected = sender.rtp(i.to_bytes(2, "big") * 80)
        assert receiver.unprotect(protected) == plain
        seqs.append(RtpPacket.parse(plain).sequence_number)
    assert seqs[535:537] == [65535, 0] and seqs[-1] == 563


def test_sequence_wrap_across_a_loss_burst() -> None:
    """Packets 65530..65535 and 0..9 lost: the ROC guess (RFC 3711 §3.3.1) still holds."""
    key = key_for(CM80, 3)
    sender, receiver = Sender(CM80, key, first_seq=65500), SrtpReceiver(CM80, key)
    for i in range(60):
        plain, protected = sender.rtp(bytes([i]) * 160)
        if not 30 <= i < 46:
            assert receiver.unprotect(protected) == plain


@pytest.mark.parametrize("name", SUITE_NAMES)
def test_srtcp_round_trip_tamper_and_replay(name: str) -> None:
    suite = SUITES[name]
    key = key_for(suite, 4)
    sender, receiver = Sender(suite, key), SrtpReceiver(suite, key)
    for octets in range(5):
        plain, protected = sender.rtcp(octets)
        decrypted = receiver.unprotect_rtcp(protected)
        assert decrypted == plain
        assert RtcpCompound.parse(decrypted).packets[0].packet_type == 200
    assert drop_reason(receiver.unprotect_rtcp, protected) == "srtp_replay"
    _, fresh = sender.rtcp(9)
    assert drop_reason(receiver.unprotect_rtcp, flip(fresh, 10)) == "srtp_auth"


def test_two_ssrcs_on_one_context() -> None:
    key = key_for(CM80, 1)
    sender, receiver = Sender(CM80, key), SrtpReceiver(CM80, key)
    for ssrc in (1, 2, 1, 2):
        plain, protected = sender.rtp(b"z" * 10, ssrc=ssrc)
        assert receiver.unprotect(protected) == plain


def test_receiver_rejects_wrong_key_length_and_window() -> None:
    with pytest.raises(UsageError, match="AEAD_AES_256_GCM needs a 44-byte key"):
        SrtpReceiver(SUITES["AEAD_AES_256_GCM"], bytes(30))
    with pytest.raises(UsageError):
        SrtpReceiver(CM80, bytes(30), replay_window_packets=32)


def test_drops_reach_the_track_counters() -> None:
    """The glue the receiver uses: decrypt, hand plain RTP on, count a drop by reason."""
    key = key_for(CM80, 1)
    sender, receiver = Sender(CM80, key), SrtpReceiver(CM80, key)
    timeline = TrackTimeline(0.0, 8000)
    datagrams = [sender.rtp(b"\xff" * 160)[1] for _ in range(4)]
    datagrams.insert(2, flip(datagrams[2], 30))
    datagrams.append(datagrams[0])
    for now, datagram in enumerate(datagrams):
        try:
            timeline.receive(receiver.unprotect(datagram), now * 0.02)
        except RtpError as error:
            timeline.count_drop(error.drop_reason)
    timeline.flush()
    stats = timeline.stats()
    assert stats.received == 4
    assert dict(stats.dropped) == {"srtp_auth": 1, "srtp_replay": 1}


# -- rekeying (RFC 4568 §7.1.4) ---------------------------------------------------------------


@pytest.mark.parametrize("name", SUITE_NAMES)
def test_rekey_without_a_gap(name: str) -> None:
    suite = SUITES[name]
    old_key, new_key = key_for(suite, 1), key_for(suite, 2)
    old = Sender(suite, old_key)
    inbound = SrtpInbound(SrtpReceiver(suite, old_key), grace_s=32.0, overlap_s=1.0)
    for i in range(10):
        plain, protected = old.rtp(bytes([i]) * 160)
        assert inbound.unprotect(protected, 100.0 + i * 0.02) == plain
    assert inbound.next_deadline() is None
    assert inbound.rekey(SrtpReceiver(suite, new_key), 101.0) is True
    assert inbound.next_deadline() == 133.0
    # The SRC has not seen our answer yet: old-key packets still decrypt.
    old_packets = [old.rtp(bytes([i]) * 160) for i in range(5)]
    for plain, protected in old_packets[:3]:
        assert inbound.unprotect(protected, 101.5) == plain
    # It switches key, same SSRC, sequence numbers going on.
    new = Sender(suite, new_key, first_seq=old.seq + 2)
    plain, protected = new.rtp(b"new")
    assert inbound.unprotect(protected, 102.0) == plain
    assert inbound.next_deadline() == 103.0  # overlap_s after the first new-key packet
    # An old-key packet reordered behind it is still taken; replays are still replays.
    late_plain, late = old_packets[3]
    assert inbound.unprotect(late, 102.5) == late_plain
    assert drop_reason(inbound.unprotect, late, 102.6) == "srtp_replay"
    assert drop_reason(inbound.unprotect, protected, 102.6) == "srtp_replay"
    assert drop_reason(inbound.unprotect, flip(new.rtp(b"t")[1], 13), 102.7) == "srtp_auth"
    # After the overlap the old key is gone.
    assert drop_reason(inbound.unprotect, old_packets[4][1], 103.0) == "srtp_auth"
    assert inbound.previous is None and inbound.next_deadline() is None
    plain, protected = new.rtp(b"after")
    assert inbound.unprotect(protected, 103.1) == plain


def test_rekey_grace_ends_even_if_the_new_key_never_comes() -> None:
    old_key, new_key = key_for(CM80, 1), key_for(CM80, 2)
    old = Sender(CM80, old_key)
    inbound = SrtpInbound(SrtpReceiver(CM80, old_key), grace_s=5.0)
    inbound.rekey(SrtpReceiver(CM80, new_key), 10.0)
    plain, protected = old.rtp(b"a")
    assert inbound.unprotect(protected, 14.9) == plain
    inbound.handle_timer(14.99)
    assert inbound.previous is not None
    inbound.handle_timer(15.0)
    assert inbound.previous is None
    assert drop_reason(inbound.unprotect, old.rtp(b"b")[1], 15.1) == "srtp_auth"


def test_srtcp_across_rekey() -> None:
    old_key, new_key = key_for(CM80, 1), key_for(CM80, 2)
    old, new = Sender(CM80, old_key), Sender(CM80, new_key)
    inbound = SrtpInbound(SrtpReceiver(CM80, old_key))
    inbound.rekey(SrtpReceiver(CM80, new_key), 0.0)
    for sender in (old, new, old):
        plain, protected = sender.rtcp(1)
        assert inbound.unprotect_rtcp(protected, 0.5) == plain
    assert inbound.next_deadline() == 1.5  # the new key's SRTCP counts as its first packet


def test_rekey_to_the_same_key_keeps_the_context() -> None:
    """A fresh context for the same key would restart the ROC: after a wrap, every packet
    would fail.  rekey() refuses it."""
    key = key_for(CM80, 1)
    sender = Sender(CM80, key, first_seq=65530)
    inbound = SrtpInbound(SrtpReceiver(CM80, key))
    for _ in range(10):
        inbound.unprotect(sender.rtp(b"x")[1], 0.0)
    assert inbound.rekey(SrtpReceiver(CM80, key), 1.0) is False
    assert inbound.previous is None
    plain, protected = sender.rtp(b"y")
    assert inbound.unprotect(protected, 1.0) == plain
    # Same key under another suite is a different context.
    assert inbound.rekey(SrtpReceiver(SUITES["AES_CM_128_HMAC_SHA1_32"], key), 2.0) is True


def test_inbound_rejects_negative_periods() -> None:
    with pytest.raises(UsageError):
        SrtpInbound(SrtpReceiver(CM80, bytes(30)), grace_s=-1.0)


# -- keys never shown -------------------------------------------------------------------------


def key_texts(key: bytes) -> list[str]:
    return [
        base64.b64encode(key).decode("ascii"),
        base64.b64encode(key).decode("ascii").rstrip("="),
        key.hex(),
        repr(key),
        str(list(key)),
    ]


@pytest.mark.parametrize("name", SUITE_NAMES)
def test_no_key_in_any_repr_str_or_error(name: str) -> None:
    suite = SUITES[name]
    offered_key = key_for(suite, 200)
    accepted = choose_answer_crypto([offer(1, name, offered_key)])
    answer_key = accepted.answer.key_params[0].key_salt
    receiver = SrtpReceiver.from_accepted(accepted)
    inbound = SrtpInbound(receiver)
    inbound.rekey(SrtpReceiver(suite, answer_key), 0.0)
    shown = [repr(accepted), str(accepted), repr(receiver), str(receiver), repr(inbound)]
    sender = Sender(suite, offered_key)
    for call, datagram in (
        (receiver.unprotect, flip(sender.rtp(b"x" * 40)[1], 20)),
        (receiver.unprotect_rtcp, b"\x80\xc8\x00\x01"),
    ):
        with pytest.raises(RtpError) as caught:
            call(datagram)
        shown += [str(caught.value), repr(caught.value), caught.value.reason]
    with pytest.raises(UsageError) as usage:
        SrtpReceiver(suite, offered_key + b"!")
    shown.append(str(usage.value))
    with pytest.raises(NoAcceptableCrypto) as refused:
        choose_answer_crypto(
            [offer(1, name, offered_key, "SECRET=" + base64.b64encode(offered_key).decode())]
        )
    shown += [str(refused.value), refused.value.reason, repr(refused.value.declined)]
    assert shown[0] == (
        f"AcceptedCrypto(tag=1, suite={name!r}, inbound_key_salt=<{suite.key_salt_bytes} "
        f"bytes redacted>, replay_window_packets=128, answer=<redacted>)"
    )
    assert shown[2] == f"SrtpReceiver(suite={name!r}, key=<redacted>)"
    text = "\n".join(shown)
    for key in (offered_key, answer_key):
        for key_text in key_texts(key):
            assert key_text not in text


def test_accepted_crypto_is_frozen() -> None:
    accepted = choose_answer_crypto([offer()])
    with pytest.raises(AttributeError):
        accepted.inbound_key_salt = b""  # type: ignore[misc]
    assert isinstance(accepted, AcceptedCrypto)
