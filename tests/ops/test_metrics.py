"""Counting into the registry, read back with the client library's own accessors."""

from __future__ import annotations

from types import MappingProxyType

from srs.ops.metrics import MAX_DROP_REASONS, Metrics
from srs.recording.sidecar import PacketCounts


def value(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def test_sip_counters_bound_their_labels() -> None:
    m = Metrics()
    for method in ("INVITE", "INVITE", "BYE", "FOO\r\n", "invite"):
        m.sip_request(method)
    m.sip_transmitted(b"SIP/2.0 200 OK\r\nVia: x\r\n\r\n")
    m.sip_transmitted(b"SIP/2.0 503 Service Unavailable\r\n\r\n")
    m.sip_transmitted(b"BYE sip:a@b SIP/2.0\r\n\r\n")  # a request we send: not a response
    m.sip_transmitted(b"SIP/2.0 2x0 odd\r\n\r\n")
    m.sip_response(999)
    m.auth_failed()
    assert value(m, "srs_sip_requests_total", method="INVITE") == 2
    assert value(m, "srs_sip_requests_total", method="BYE") == 1
    assert value(m, "srs_sip_requests_total", method="other") == 2
    assert value(m, "srs_sip_responses_total", status="200") == 1
    assert value(m, "srs_sip_responses_total", status="503") == 1
    assert value(m, "srs_sip_responses_total", status="other") == 1
    assert value(m, "srs_auth_failures_total") == 1


def test_sessions_and_rtp_totals_are_added_when_a_session_ends() -> None:
    m = Metrics()
    m.session_started()
    m.session_started()
    assert value(m, "srs_sessions_active") == 2
    assert value(m, "srs_sessions_finished_total", status="failed") == 0  # there for alerts
    streams = [
        PacketCounts(received=100, lost=3, dropped={"srtp_auth": 4, "late": 1}),
        PacketCounts(received=50, lost=0, dropped=MappingProxyType({"srtp_replay": 2})),
    ]
    m.session_finished("complete", streams, bytes_written=48_044)
    m.session_finished("bogus", [])
    m.sessions_repaired(3)
    assert value(m, "srs_sessions_active") == 0
    assert value(m, "srs_sessions_finished_total", status="complete") == 1
    assert value(m, "srs_sessions_finished_total", status="other") == 1
    assert value(m, "srs_sessions_finished_total", status="interrupted") == 3
    assert value(m, "srs_rtp_packets_received_total") == 150
    assert value(m, "srs_rtp_packets_lost_total") == 3
    assert value(m, "srs_rtp_packets_dropped_total", reason="srtp_auth") == 4
    assert value(m, "srs_rtp_packets_dropped_total", reason="late") == 1
    assert value(m, "srs_srtp_failures_total", reason="srtp_auth") == 4
    assert value(m, "srs_srtp_failures_total", reason="srtp_replay") == 2
    assert value(m, "srs_srtp_failures_total", reason="late") is None
    assert value(m, "srs_recording_bytes_written_total") == 48_044


def test_drop_reasons_are_capped() -> None:
    m = Metrics()
    m.session_started()
    dropped = {f"reason{i}": 1 for i in range(MAX_DROP_REASONS + 5)}
    m.session_finished("complete", [PacketCounts(received=1, dropped=dropped)])
    assert value(m, "srs_rtp_packets_dropped_total", reason="other") == 5
    assert value(m, "srs_rtp_packets_dropped_total", reason="reason0") == 1


def test_free_space_is_read_at_scrape_time_and_lag_is_kept() -> None:
    free = [10.0]
    calls: list[float] = []

    def free_bytes() -> float:
        calls.append(free[0])
        return free[0]

    m = Metrics(free_bytes=free_bytes)
    assert calls == []  # registering measures nothing: the directory may not exist yet
    assert value(m, "srs_recordings_free_bytes") == 10
    free[0] = 5.0
    assert value(m, "srs_recordings_free_bytes") == 5
    free[0] = None  # type: ignore[call-overload]
    assert len(calls) == 2
    assert value(m, "srs_recordings_free_bytes") is None
    m.observe_loop_lag(0.3)
    m.observe_loop_lag(-0.001)  # a timer can fire a hair early: never negative
    assert value(m, "srs_event_loop_lag_seconds") == 0
    assert value(m, "srs_event_loop_lag_observed_seconds_count") == 2
    assert value(m, "srs_event_loop_lag_observed_seconds_bucket", le="0.25") == 1
    m.webhook_result("delivered")
    m.webhook_pending(4)
    assert value(m, "srs_webhook_attempts_total", result="delivered") == 1
    assert value(m, "srs_webhook_pending") == 4


def test_registries_are_independent() -> None:
    a, b = Metrics(), Metrics()
    a.auth_failed()
    assert value(b, "srs_auth_failures_total") == 0
