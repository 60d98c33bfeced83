"""srs call's UacCall against srs's SipCore, in memory on a fake clock (tests/sip/pair.py).

Each test is a whole exchange, both sides' state machines included, with the RFC 3261
timers scaled down (pair.TINY): losses run every retransmission schedule to its end in a
few milliseconds of wall time.
"""

from __future__ import annotations

import itertools

import pytest

from srs.client.uac import ByeReceived
from srs.sip.client_transaction import TimedOut
from srs.sip.uas import NewSession, SessionEnded, SessionUpdate
from tests.sip.pair import CLIENT_TO_SERVER, SERVER_TO_CLIENT, TINY, Pair

T1 = TINY.t1_s
T2 = TINY.t2_s

SETUP = ["c>s INVITE", "s>c 100 INVITE", "s>c 200 INVITE", "c>s ACK"]


def established(transport: str = "udp") -> Pair:
    pair = Pair(transport=transport)
    invite = pair.invite()
    assert pair.labels() == SETUP
    assert pair.statuses(invite) == [100, 200]
    assert pair.dialog_id is not None and pair.call.dialog is not None
    return pair


def retransmission_times(pair: Pair, what: str, since: int = 0) -> list[float]:
    return [w.at for w in pair.wire[since:] if str(w).removesuffix(" (lost)") == what]


# -- the ordinary call ---------------------------------------------------------------------


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_invite_200_ack_then_client_bye(transport: str) -> None:
    pair = established(transport)
    [new] = [e for e in pair.server_events if isinstance(e, NewSession)]
    assert new.request.require == ("siprec",)
    dialog, dialog_id = pair.call.dialog, pair.dialog_id
    assert dialog is not None and dialog_id is not None
    assert dialog.id.remote_tag == dialog_id.local_tag  # the two sides name one dialog
    assert dialog.id.local_tag == dialog_id.remote_tag
    mark = len(pair.wire)
    bye = pair.request("BYE")
    assert pair.labels(mark) == ["c>s BYE", "s>c 200 BYE"]
    assert pair.statuses(bye) == [200]
    assert pair.ended() == ["bye"]
    assert len(pair.core.dialogs) == 0
    pair.settle()
    assert pair.idle()
    # Nothing was retransmitted: every message crossed once.
    assert pair.labels() == [*SETUP, "c>s BYE", "s>c 200 BYE"]


def test_reinvite_and_update_in_the_dialog() -> None:
    pair = established()
    mark = len(pair.wire)
    reinvite = pair.request("INVITE", b"v=0\r\n", "application/sdp")
    assert pair.labels(mark) == ["c>s INVITE", "s>c 100 INVITE", "s>c 200 INVITE", "c>s ACK"]
    ack = pair.wire[-1].message
    assert ack.cseq.number == reinvite.cseq.number == 2  # RFC 3261 §13.2.2.4
    mark = len(pair.wire)
    update = pair.request("UPDATE", b"<recording/>", "application/rs-metadata+xml")
    assert pair.labels(mark) == ["c>s UPDATE", "s>c 200 UPDATE"]  # no ACK for UPDATE
    updates = [e for e in pair.server_events if isinstance(e, SessionUpdate)]
    assert [(e.request.method, e.request.cseq.number) for e in updates] == [
        ("INVITE", 2), ("UPDATE", 3)]
    assert all(e.dialog_id == pair.dialog_id for e in updates)
    assert pair.statuses(reinvite) == [100, 200] and pair.statuses(update) == [200]
    pair.settle()
    assert pair.idle() and pair.ended() == []


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_server_hangs_up(transport: str) -> None:
    pair = established(transport)
    mark = len(pair.wire)
    pair.hang_up()
    assert pair.labels(mark) == ["s>c BYE", "c>s 200 BYE"]
    assert [type(e) for e in pair.client_events][-1] is ByeReceived
    assert len(pair.core.dialogs) == 0
    pair.settle()
    assert pair.idle()
    assert not any(isinstance(e, TimedOut) for e in pair.server_events)


def test_cancel_before_the_answer() -> None:
    pair = Pair(auto_answer=False)
    invite = pair.invite()
    assert pair.labels() == ["c>s INVITE", "s>c 100 INVITE"]
    [new] = pair.pending
    mark = len(pair.wire)
    cancel = pair.cancel()
    # RFC 3261 §9.2: 200 to the CANCEL, 487 to the INVITE, which the client's INVITE
    # transaction ACKs itself (§17.1.1.3).
    assert pair.labels(mark) == ["c>s CANCEL", "s>c 200 CANCEL", "s>c 487 INVITE", "c>s ACK"]
    assert pair.statuses(cancel) == [200]
    assert pair.statuses(invite) == [100, 487]
    assert pair.ended() == ["cancel"]
    [ended] = [e for e in pair.server_events if isinstance(e, SessionEnded)]
    assert ended.pending is new.pending and ended.dialog_id is None
    # The session layer's answer comes too late: the core sends nothing, makes no dialog.
    mark = len(pair.wire)
    assert pair.answer(new) == []
    assert pair.labels(mark) == [] and pair.dialog_id is None and pair.call.dialog is None
    pair.settle()
    assert pair.idle()


def test_rejected_invite_is_acked_by_the_client_transaction() -> None:
    pair = Pair(auto_answer=False)
    invite = pair.invite()
    [new] = pair.pending
    pair.answer(new, 503)
    assert pair.labels() == ["c>s INVITE", "s>c 100 INVITE", "s>c 503 INVITE", "c>s ACK"]
    ack = pair.wire[-1].message
    assert ack.top_via.branch == invite.top_via.branch  # §17.1.1.3: the INVITE's branch
    assert pair.statuses(invite) == [100, 503] and pair.call.dialog is None
    pair.settle()
    assert pair.idle()


# -- losses ----------------------------------------------------------------------------------


def test_lost_invite_is_retransmitted_by_timer_a() -> None:
    pair = Pair()
    pair.lose(CLIENT_TO_SERVER, "INVITE", times=2)
    invite = pair.invite()
    assert pair.labels() == ["c>s INVITE (lost)"]
    pair.run_until(10 * T1)
    assert pair.labels() == ["c>s INVITE (lost)", "c>s INVITE (lost)", *SETUP]
    assert retransmission_times(pair, "c>s INVITE") == pytest.approx([0.0, T1, 3 * T1])
    assert pair.statuses(invite) == [100, 200]


def test_lost_ack_once_the_server_retransmits_its_2xx_until_the_next_ack() -> None:
    pair = Pair()
    pair.lose(CLIENT_TO_SERVER, "ACK", times=1)
    invite = pair.invite()
    assert pair.labels() == [*SETUP[:3], "c>s ACK (lost)"]
    pair.run_until(2 * T1)
    # RFC 3261 §13.3.1.4: the 2xx again after T1; the client ACKs it again (§13.2.2.4).
    assert pair.labels()[4:] == ["s>c 200 INVITE", "c>s ACK"]
    assert pair.statuses(invite) == [100, 200, 200]  # RFC 6026 §7.2: Accepted passes it up
    pair.settle()
    assert pair.idle()
    assert len(retransmission_times(pair, "s>c 200 INVITE")) == 2
    assert pair.ended() == []  # the second ACK arrived: no timeout


def test_lost_ack_the_server_gives_up_at_64_t1_and_hangs_up() -> None:
    pair = Pair()
    pair.lose(CLIENT_TO_SERVER, "ACK")
    pair.invite()
    pair.run_until(64 * T1 + 1e-9)
    # The 2xx is retransmitted at T1, doubling to T2 (§13.3.1.4), each re-ACKed and lost ...
    sent = retransmission_times(pair, "s>c 200 INVITE")
    assert [b - a for a, b in itertools.pairwise(sent)] == pytest.approx(
        [T1, 2 * T1, 4 * T1, T2, T2, T2, T2, T2, T2, T2])
    assert len(retransmission_times(pair, "c>s ACK")) == len(sent)
    # ... until Timer L: the session ends "timeout" and the session layer sends a BYE.
    assert pair.ended() == ["timeout"]
    assert pair.labels()[-2:] == ["s>c BYE", "c>s 200 BYE"]
    assert isinstance(pair.client_events[-1], ByeReceived)
    pair.settle()
    assert pair.idle()


def test_lost_bye_200_the_client_retransmits_then_timer_f() -> None:
    pair = established()
    pair.lose(SERVER_TO_CLIENT, "200 BYE")
    mark = len(pair.wire)
    bye = pair.request("BYE")
    assert pair.now == 0.0
    pair.run_until(64 * T1 - 1e-6)
    assert retransmission_times(pair, "c>s BYE", mark)  # retransmitted, not yet given up
    assert not any(isinstance(e, TimedOut) for e in pair.client_events)
    pair.run_until(64 * T1)  # Timer F
    [timeout] = [e for e in pair.client_events if isinstance(e, TimedOut)]
    assert timeout.request is bye and pair.statuses(bye) == []
    pair.settle()
    sent = retransmission_times(pair, "c>s BYE", mark)
    assert [b - a for a, b in itertools.pairwise(sent)] == pytest.approx(
        [T1, 2 * T1, 4 * T1, T2, T2, T2, T2, T2, T2, T2])  # Timer E, capped at T2
    # The server's transaction answered every retransmission with its 200 (§17.2.2) ...
    assert len(retransmission_times(pair, "s>c 200 BYE", mark)) == len(sent)
    # ... and the session ended once.
    assert pair.ended() == ["bye"]
    assert pair.idle()


def test_lost_bye_200_once_the_retransmitted_bye_gets_it() -> None:
    pair = established()
    pair.lose(SERVER_TO_CLIENT, "200 BYE", times=1)
    bye = pair.request("BYE")
    pair.settle()
    assert pair.statuses(bye) == [200]
    assert pair.labels()[len(SETUP):] == ["c>s BYE", "s>c 200 BYE (lost)", "c>s BYE",
                                          "s>c 200 BYE"]
    assert not any(isinstance(e, TimedOut) for e in pair.client_events)
    assert pair.ended() == ["bye"] and pair.idle()


def test_server_bye_unanswered_times_out_on_the_server() -> None:
    pair = established()
    pair.lose(CLIENT_TO_SERVER, "200 BYE")
    pair.hang_up()
    pair.settle()
    [timeout] = [e for e in pair.server_events if isinstance(e, TimedOut)]
    assert (timeout.method, timeout.call_id) == ("BYE", pair.call.call_id)
    # The client answered every retransmission statelessly, and heard the BYE each time.
    byes = retransmission_times(pair, "s>c BYE")
    assert len(byes) == len(retransmission_times(pair, "c>s 200 BYE")) > 1
    assert sum(isinstance(e, ByeReceived) for e in pair.client_events) == len(byes)
    assert pair.idle()


def test_provisional_only_the_client_gives_up_at_timer_b() -> None:
    pair = Pair(auto_answer=False)
    invite = pair.invite()
    assert pair.statuses(invite) == [100]
    pair.run_until(64 * T1 + 1e-9)
    [timeout] = [e for e in pair.client_events if isinstance(e, TimedOut)]
    assert timeout.request is invite and len(pair.call) == 0
    # The server still holds the INVITE for its session layer; an answer now finds no
    # transaction at the client, so no ACK: the server's Timer L ends the session and its
    # BYE meets a client without a dialog (481).
    [new] = pair.pending
    pair.answer(new)
    pair.settle()
    assert pair.ended() == ["timeout"]
    assert pair.labels()[-2:] == ["s>c BYE", "c>s 481 BYE"]
    assert "c>s ACK" not in pair.labels() and pair.call.dialog is None
    assert pair.idle()
