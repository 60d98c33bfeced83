import os
from pathlib import Path

import pytest

from srs.config import (
    TWILIO_MEDIA_CIDRS,
    TWILIO_SIGNALLING_CIDRS,
    Settings,
    load_settings,
    service_link_names,
)
from srs.errors import ConfigError
from srs.recording.policy import RecorderConfig
from srs.rtp.sources import MediaSources, SourcePolicy


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "srs.toml"
    path.write_text(text)
    return path


def test_defaults_without_file_or_environment() -> None:
    settings = load_settings(None, {})
    assert settings == Settings()
    assert settings.sip.port == 5060 and settings.sip.tls_port == 5061
    assert settings.sip.host == "0.0.0.0"
    assert settings.auth.header == "X-Auth-Token" and settings.auth.tokens == ()
    assert (settings.media.port_min, settings.media.port_max) == (10000, 20000)
    assert settings.recordings.dir == Path("./recordings")
    assert settings.server.state_dir == Path("./.srs-state")
    assert not settings.sip.ephemeral_ports and not settings.management.ephemeral_port
    assert settings.management.port == 8080


def test_ephemeral_ports_keep_zero_as_disabled() -> None:
    settings = load_settings(None, {"SRS_SIP_EPHEMERAL_PORTS": "true", "SRS_SIP_TLS_PORT": "0",
                                    "SRS_MANAGEMENT_EPHEMERAL_PORT": "on"})
    assert settings.sip.ephemeral_ports and settings.management.ephemeral_port
    assert (settings.sip.port, settings.sip.tls_port) == (5060, 0)


def test_file_values_are_typed(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
[sip]
port = 5070
tls_port = 0
[auth]
header = "X-Recorder-Key"
tokens = ["a1", "b2"]
allow_cidrs = "twilio, 10.0.0.0/8"
[media]
advertised_address = "203.0.113.7"
[recordings]
dir = "/var/rec"
""",
    )
    settings = load_settings(path, {})
    assert settings.sip.port == 5070 and settings.sip.tls_port == 0
    assert settings.auth.tokens == ("a1", "b2")
    assert settings.auth.allow_cidrs == ("twilio", "10.0.0.0/8")
    nets = [str(n) for n in settings.auth.networks()]
    assert nets == [*TWILIO_SIGNALLING_CIDRS, "10.0.0.0/8"]
    assert settings.media.advertised_address == "203.0.113.7"
    assert settings.recordings.dir == Path("/var/rec")


def test_media_sources_and_their_twilio_preset() -> None:
    assert Settings().media.source == ("offer", "signalling")
    settings = load_settings(None, {"SRS_MEDIA_SOURCE": "", "SRS_MEDIA_ALLOW_CIDRS": "twilio"})
    assert settings.media.source == ()
    assert [str(n) for n in settings.media.networks()] == list(TWILIO_MEDIA_CIDRS)
    policy = RecorderConfig.from_settings(settings).media_sources
    assert policy == SourcePolicy(offer=False, signalling=False, any=False,
                                  networks=settings.media.networks())


def test_ipv4_mapped_networks_are_taken_as_ipv4() -> None:
    """Sources are compared as IPv4 when IPv4-mapped, so a network written that way must be
    too, or it would never match."""
    settings = load_settings(None, {"SRS_MEDIA_ALLOW_CIDRS": "::ffff:203.0.113.0/120",
                                    "SRS_AUTH_ALLOW_CIDRS": "::ffff:198.51.100.7, 2001:db8::/32"})
    assert [str(n) for n in settings.media.networks()] == ["203.0.113.0/24"]
    assert [str(n) for n in settings.auth.networks()] == ["198.51.100.7/32", "2001:db8::/32"]
    sources = MediaSources(RecorderConfig.from_settings(settings).media_sources,
                           offer_host=None, signalling_host=None)
    assert sources.accepts("203.0.113.9") and sources.accepts("::ffff:203.0.113.9")


def test_environment_wins_over_file(tmp_path: Path) -> None:
    path = write(tmp_path, "[sip]\nport = 5070\n[auth]\ntokens = ['file']\n")
    env = {"SRS_SIP_PORT": "5080", "SRS_SIP_TLS_PORT": "0", "SRS_AUTH_TOKENS": "x,y",
           "PATH": "/bin"}
    settings = load_settings(path, env)
    assert settings.sip.port == 5080
    assert settings.sip.tls_port == 0
    assert settings.auth.tokens == ("x", "y")


def test_client_variables_are_not_server_settings() -> None:
    assert load_settings(None, {"SRS_CALL_TOKEN": "abc"}) == Settings()


# What the kubelet injects for a Service "srs-sip" (cluster IP 10.96.4.2) with the ports
# sip-udp 5060/UDP and sip-tls 5061/TCP, and for "srs-0" on an IPv6 cluster: names that
# collide with settings (SRS_SIP_PORT) and names in known sections (SRS_SIP_SERVICE_HOST).
SERVICE_LINKS = {
    "SRS_SIP_SERVICE_HOST": "10.96.4.2",
    "SRS_SIP_SERVICE_PORT": "5060",
    "SRS_SIP_SERVICE_PORT_SIP_UDP": "5060",
    "SRS_SIP_SERVICE_PORT_SIP_TLS": "5061",
    "SRS_SIP_PORT": "udp://10.96.4.2:5060",
    "SRS_SIP_PORT_5060_UDP": "udp://10.96.4.2:5060",
    "SRS_SIP_PORT_5060_UDP_PROTO": "udp",
    "SRS_SIP_PORT_5060_UDP_PORT": "5060",
    "SRS_SIP_PORT_5060_UDP_ADDR": "10.96.4.2",
    "SRS_SIP_PORT_5061_TCP": "tcp://10.96.4.2:5061",
    "SRS_SIP_PORT_5061_TCP_PROTO": "tcp",
    "SRS_SIP_PORT_5061_TCP_PORT": "5061",
    "SRS_SIP_PORT_5061_TCP_ADDR": "10.96.4.2",
    "SRS_0_SERVICE_HOST": "fd00:10:96::4",
    "SRS_0_SERVICE_PORT": "5060",
    "SRS_0_PORT": "udp://[fd00:10:96::4]:5060",
    "SRS_0_PORT_5060_UDP_ADDR": "fd00:10:96::4",
}


def test_kubernetes_service_links_are_not_settings() -> None:
    env = {**SERVICE_LINKS, "SRS_SIP_TLS_PORT": "0", "KUBERNETES_SERVICE_HOST": "10.96.0.1"}
    settings = load_settings(None, env)
    assert settings.sip.port == 5060 and settings.sip.tls_port == 0
    assert service_link_names(env) == sorted(SERVICE_LINKS)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SRS_SIP_LISTN", "5060"),  # a misspelt key in a known section
        ("SRS_MEDIA_PORT", "10000"),  # shaped like SVC_PORT, but not a link's value
        ("SRS_SIP_SERVICE_HOST", "sip.example.com"),  # links carry IP addresses
        ("SRS_SIP_PORT_5060_UDP_PROTO", "quic"),
        ("SRS_SIP_PORT_5060_UDP", "5060"),
    ],
)
def test_service_link_lookalikes_are_still_errors(name: str, value: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(None, {**SERVICE_LINKS, name: value})
    assert info.value.key == name
    assert service_link_names({name: value}) == []


@pytest.mark.parametrize(
    ("env", "key", "fragment"),
    [
        ({"SRS_SIP_PORT": "seventy"}, "SRS_SIP_PORT", "must be an integer: 'seventy'"),
        ({"SRS_SIP_PORT": "70000"}, "sip.port", "from 0 to 65535: 70000"),
        ({"SRS_SIP_PROT": "5060"}, "SRS_SIP_PROT", "unknown key"),
        ({"SRS_NOPE_X": "1"}, "SRS_NOPE_X", "unknown setting"),
        ({"SRS_MEDIA_PORT_MIN": "10001"}, "media.port_min", "must be even"),
        ({"SRS_MEDIA_PORT_MAX": "9000"}, "media.port_max", "must be above"),
        ({"SRS_MEDIA_SRTP": "maybe"}, "SRS_MEDIA_SRTP", "must be one of allow, require, off"),
        ({"SRS_AUTH_ALLOW_CIDRS": "10.0.0.0/33"}, "auth.allow_cidrs", "'10.0.0.0/33'"),
        ({"SRS_MEDIA_ALLOW_CIDRS": "twillio"}, "media.allow_cidrs", "'twillio'"),
        ({"SRS_MEDIA_SOURCE": "offer,sdp"}, "media.source", "offer, signalling or any: 'sdp'"),
        ({"SRS_MEDIA_SOURCE": ""}, "media.source", "no RTP would ever be recorded"),
        ({"SRS_AUTH_HEADER": "X Auth"}, "auth.header", "not a SIP header name"),
        ({"SRS_MEDIA_ADVERTISED_ADDRESS": "example"}, "media.advertised_address", "not an IP"),
        ({"SRS_SIP_HOST": "somewhere"}, "sip.host", "not an IP address"),
        ({"SRS_TLS_VERIFY_CLIENT": "true"}, "tls.verify_client", "needs tls.ca"),
        ({"SRS_TLS_CERT": "/nonexistent.pem"}, "tls.cert", "given together"),
        ({"SRS_LOG_LEVEL": "loud"}, "SRS_LOG_LEVEL", "must be one of"),
        ({"SRS_SIP_EPHEMERAL_PORTS": "maybe"}, "SRS_SIP_EPHEMERAL_PORTS", "true or false"),
        ({"SRS_SIP_EPHEMERAL_PORTS": "1", "SRS_SIP_PORT": "0", "SRS_SIP_TLS_PORT": "0"},
         "sip.ephemeral_ports", "nothing to bind"),
        ({"SRS_MANAGEMENT_EPHEMERAL_PORT": "yes", "SRS_MANAGEMENT_PORT": "0"},
         "management.ephemeral_port", "management.port is 0"),
    ],
)
def test_bad_values_name_the_key(env: dict[str, str], key: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(None, env)
    assert info.value.key == key
    assert fragment in str(info.value)


def test_unknown_key_and_section_in_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"sip\.prot: unknown key"):
        load_settings(write(tmp_path, "[sip]\nprot = 1\n"), {})
    with pytest.raises(ConfigError, match=r"^database: unknown section"):
        load_settings(write(tmp_path, "[database]\nurl = 'x'\n"), {})


def test_file_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_settings(tmp_path / "missing.toml", {})
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(write(tmp_path, "[sip\n"), {})
    with pytest.raises(ConfigError, match=r"sip\.port: must be an integer"):
        load_settings(write(tmp_path, "[sip]\nport = '5060x'\n"), {})


def test_token_errors_never_echo_the_token() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(None, {"SRS_AUTH_TOKENS": "good,bad token"})
    assert "bad token" not in str(info.value)


def test_settings_are_frozen() -> None:
    settings = load_settings(None, {})
    with pytest.raises(AttributeError):
        settings.sip.port = 1  # type: ignore[misc]


def test_usable_cpus_honours_a_cgroup_quota(tmp_path: Path) -> None:
    from srs.config import usable_cpus

    affinity = len(os.sched_getaffinity(0))
    cpu_max = tmp_path / "cpu.max"
    cpu_max.write_text("max 100000\n")
    assert usable_cpus(cpu_max) == affinity
    cpu_max.write_text("50000 100000\n")  # half a CPU: one worker
    assert usable_cpus(cpu_max) == 1
    cpu_max.write_text(f"{affinity * 100000 + 1} 100000\n")
    assert usable_cpus(cpu_max) == affinity  # never more than the affinity allows
    assert usable_cpus(tmp_path / "missing") == affinity


def test_media_workers_need_four_ports_each() -> None:
    with pytest.raises(ConfigError, match=r"media.workers: 3 workers need at least 12 RTP"):
        load_settings(None, {}, {"media": {"workers": 3, "port_min": 10000,
                                           "port_max": 10009}})


def test_stream_settings_from_the_environment_and_their_errors(tmp_path: Path) -> None:
    settings = load_settings(None, {"SRS_STREAM_URL": "wss://a.example/m,ws://10.0.0.1:8080/",
                                    "SRS_STREAM_FORMAT": "L16",
                                    "SRS_STREAM_TRACKS": "inbound"})
    assert settings.stream.url == ("wss://a.example/m", "ws://10.0.0.1:8080/")
    assert settings.stream.format == "l16" and settings.stream.tracks == ("inbound",)
    secret = "Bearer s3cr3t-value"
    assert secret not in repr(load_settings(None, {}, {"stream": {
        "url": ["ws://h/"], "headers": [f"Authorization: {secret}"]}}))
    for overrides, match in [
        ({"url": ["https://h/"]}, r"stream\.url: must be a ws:// or wss:// URL"),
        ({"url": ["ws://u:p@h/"]}, r"stream\.url: must not contain user information"),
        ({"format": "mp3"}, r"stream\.format: must be one of twilio, l16"),
        ({"headers": ["no colon here"]}, r"stream\.headers"),
        ({"headers": ["Bad Name: x"]}, r"stream\.headers"),
        ({"queue_ms": 10}, r"stream\.queue_ms: must be from 100"),
        ({"ca": str(tmp_path / "none.pem")}, r"stream\.ca: no such file"),
        ({"tracks": []}, r"stream\.tracks"),
    ]:
        with pytest.raises(ConfigError, match=match):
            load_settings(None, {}, {"stream": overrides})
    for bad in (f"Authorization: {secret}\r\nX: y", f"Authorization {secret}"):
        with pytest.raises(ConfigError) as error:
            load_settings(None, {}, {"stream": {"headers": ["A: b", bad]}})
        assert "s3cr3t" not in str(error.value) and "entry 2" in str(error.value)
