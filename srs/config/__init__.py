"""The settings tree: one frozen value, loaded from a TOML file and ``SRS_*`` variables.

Precedence: defaults < TOML file (``srs serve --config F``) < environment.  An environment
variable is named ``SRS_<SECTION>_<KEY>`` in upper case, e.g. ``SRS_SIP_TLS_PORT=0`` or
``SRS_AUTH_ALLOW_CIDRS=twilio,10.0.0.0/8``.  Every value is validated at start-up; the
error names the key and the value.  Unknown sections and keys are errors, in the file and
in the environment alike (a typo must not silently fall back to a default); the one
exception is the service-link variables Kubernetes injects (``SRS_0_SERVICE_HOST`` for a
Service ``srs-0``), recognised by name and value and left alone.

Each section is a frozen dataclass whose field docstrings double as the reference in the
README ("Configuration").
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from srs.config.checks import IpAddress as IpAddress
from srs.config.checks import IpNetwork as IpNetwork
from srs.config.checks import check_host as _check_host
from srs.config.checks import check_ip as _check_ip
from srs.config.checks import check_port as _check_port
from srs.config.checks import check_range as _check_range
from srs.config.checks import ip_of as ip_of
from srs.config.checks import is_token as _is_token
from srs.config.checks import networks as _networks
from srs.config.checks import usable_cpus as usable_cpus
from srs.errors import ConfigError

__all__ = [
    "TWILIO_SIGNALLING_CIDRS",
    "TWILIO_MEDIA_CIDRS",
    "SipSettings",
    "TlsSettings",
    "AuthSettings",
    "MediaSettings",
    "RecordingsSettings",
    "ServerSettings",
    "WebhookSettings",
    "StreamSettings",
    "ManagementSettings",
    "LogSettings",
    "Settings",
    "load_settings",
    "service_link_names",
    "ENV_PREFIX",
]

ENV_PREFIX = "SRS_"

# Environment variables under SRS_ that are not server settings (read by the client
# commands), so that the strict unknown-key check leaves them alone.
_CLIENT_ENV_PREFIXES = ("SRS_CALL_",)

# Twilio's SIP signalling sources for <Siprec> (UDP/TCP 5060, TLS 5061), as Twilio
# publishes them for its edges.  The `twilio` allow-list preset expands to these.
TWILIO_SIGNALLING_CIDRS: tuple[str, ...] = (
    "54.172.60.0/30",
    "54.244.51.0/30",
    "54.171.127.192/30",
    "35.156.191.128/30",
    "54.65.63.192/30",
    "54.169.127.128/30",
    "54.252.254.64/30",
    "177.71.206.192/30",
)
# Twilio's media sources (UDP 10000-60000).
TWILIO_MEDIA_CIDRS: tuple[str, ...] = ("168.86.128.0/18",)

# Kubernetes injects, for every Service with a cluster IP in the pod's namespace, variables
# named after the Service (upper case, "-" as "_"): a Service "srs-0" gives SRS_0_SERVICE_HOST
# and the like (Kubernetes documentation, "Service" > "Environment variables"; the kubelet's
# pkg/kubelet/envvars).  They are not settings.  Each pattern matches the name and the value
# the kubelet gives it, so a misspelt setting (SRS_MEDIA_PORT=10000) still stops the start.
_IP = r"[0-9A-Fa-f:.]+"  # an IPv4 or IPv6 cluster IP
_PROTO = r"(?:TCP|UDP|SCTP)"
_SERVICE_LINKS: tuple[tuple[re.Pattern[str], re.Pattern[str]], ...] = tuple(
    (re.compile(name), re.compile(value)) for name, value in (
        (r"[A-Z0-9_]+_SERVICE_HOST", _IP),
        (r"[A-Z0-9_]+_SERVICE_PORT(?:_[A-Z0-9_]+)?", r"[0-9]{1,5}"),
        # The Docker-link style ones: SVC_PORT=udp://10.0.0.1:5060, SVC_PORT_5060_UDP=...,
        # SVC_PORT_5060_UDP_PROTO=udp, _PORT=5060, _ADDR=10.0.0.1.
        (rf"[A-Z0-9_]+_PORT(?:_[0-9]{{1,5}}_{_PROTO})?",
         rf"(?:tcp|udp|sctp)://(?:{_IP}|\[{_IP}\]):[0-9]{{1,5}}"),
        (rf"[A-Z0-9_]+_PORT_[0-9]{{1,5}}_{_PROTO}_PROTO", r"tcp|udp|sctp"),
        (rf"[A-Z0-9_]+_PORT_[0-9]{{1,5}}_{_PROTO}_PORT", r"[0-9]{1,5}"),
        (rf"[A-Z0-9_]+_PORT_[0-9]{{1,5}}_{_PROTO}_ADDR", _IP),
    )
)

_PRESETS: dict[str, tuple[str, ...]] = {"twilio": TWILIO_SIGNALLING_CIDRS}
_MEDIA_PRESETS: dict[str, tuple[str, ...]] = {"twilio": TWILIO_MEDIA_CIDRS}
_MEDIA_SOURCES = ("offer", "signalling", "any")

@dataclass(frozen=True)
class SipSettings:
    host: str = "0.0.0.0"  # noqa: S104 - a server listens on every interface by default
    """Address the SIP listeners bind to (``::`` for IPv6 and IPv4)."""
    port: int = 5060
    """UDP and TCP listening port; 0 disables both."""
    tls_port: int = 5061
    """TLS listening port; 0 disables it."""
    ephemeral_ports: bool = False
    """Bind ports the system chooses instead of ``port`` and ``tls_port`` (UDP and TCP
    still share one number), and log them in the ``listening`` event: for tests and for
    instances side by side behind a dispatcher.  A port of 0 still disables its listener."""
    max_message_bytes: int = 65535
    """Largest SIP message accepted on any transport."""
    max_connections: int = 1024
    """Concurrent TCP and TLS connections, together.  When full, a new connection evicts
    the oldest one that has not sent a complete message yet, else the oldest that carries
    no call; it is refused only when every connection carries a call."""
    max_connections_per_ip: int = 64
    """Concurrent TCP and TLS connections from one source address (an IPv6 source counts
    per /64); more are closed when accepted.  Raise it when the recording clients reach
    srs through a proxy or a NAT that shows many of them as one address."""
    first_message_timeout_s: float = 5.0
    """A new TCP/TLS connection that has not completed its TLS handshake and a first SIP
    message this long after it was accepted is closed."""
    idle_timeout_s: float = 300.0
    """A TCP/TLS connection with no traffic for this long is closed."""
    min_se_s: int = 90
    """Smallest RFC 4028 session interval (``Session-Expires``) accepted; a shorter one is
    answered 422 with this ``Min-SE``.  When the recording client runs a session timer,
    srs ends the session with a BYE if the client's refresh is missing (RFC 4028 §10).
    RFC 4028 §4 makes 90 the least a deployment may ask for; lower values are for tests."""

    def validate(self) -> None:
        _check_port("sip.port", self.port)
        _check_port("sip.tls_port", self.tls_port)
        if self.ephemeral_ports and not (self.port or self.tls_port):
            raise ConfigError("sip.ephemeral_ports",
                              "nothing to bind: sip.port and sip.tls_port are both 0 (disabled)")
        _check_host("sip.host", self.host)
        _check_range("sip.max_message_bytes", self.max_message_bytes, 1024, 1 << 20)
        _check_range("sip.max_connections", self.max_connections, 1, 1 << 20)
        _check_range("sip.max_connections_per_ip", self.max_connections_per_ip, 1, 1 << 20)
        _check_range("sip.first_message_timeout_s", self.first_message_timeout_s, 0.1, 600)
        _check_range("sip.idle_timeout_s", self.idle_timeout_s, 1, 86400)
        _check_range("sip.min_se_s", self.min_se_s, 1, 86400)


@dataclass(frozen=True)
class TlsSettings:
    cert: Path | None = None
    """PEM certificate chain.  When cert and key are absent, a self-signed certificate is
    generated into the state directory and its SHA-256 fingerprint logged."""
    key: Path | None = None
    """PEM private key for ``cert``."""
    ca: Path | None = None
    """PEM CA bundle used to verify client certificates (with ``verify_client``)."""
    verify_client: bool = False
    """Require a client certificate signed by ``ca`` on TLS connections."""

    def validate(self) -> None:
        if (self.cert is None) != (self.key is None):
            raise ConfigError("tls.cert", "tls.cert and tls.key must be given together")
        for name in ("cert", "key", "ca"):
            path = getattr(self, name)
            if path is not None and not path.is_file():
                raise ConfigError(f"tls.{name}", f"no such file: {str(path)!r}")
        if self.verify_client and self.ca is None:
            raise ConfigError("tls.verify_client", "needs tls.ca (the CA bundle to verify with)")


@dataclass(frozen=True)
class AuthSettings:
    header: str = "X-Auth-Token"
    """SIP header that carries the credential of the recording client (the
    "credentials header name" of a Twilio SIPREC connector)."""
    tokens: tuple[str, ...] = field(default=(), repr=False)
    """Accepted credential values, comma-separated: several allow rotation.  When empty,
    the first start generates one into the state directory (see ``--no-auth``)."""
    allow_cidrs: tuple[str, ...] = ()
    """Optional source-address allow-list, comma-separated CIDRs; ``twilio`` expands to
    Twilio's signalling ranges.  Empty allows every source.  A TCP or TLS connection
    from elsewhere is closed when accepted, before the TLS handshake; a request over UDP
    gets 403."""

    def validate(self) -> None:
        if not _is_token(self.header):
            raise ConfigError("auth.header", f"not a SIP header name: {self.header!r}")
        for token in self.tokens:
            # Never echo a credential back in an error message.
            if not token or any(ch.isspace() or ch == "," for ch in token):
                raise ConfigError("auth.tokens", "a token is empty or contains whitespace")
        self.networks()

    def networks(self) -> tuple[IpNetwork, ...]:
        """The allow-list with presets expanded."""
        return _networks("auth.allow_cidrs", self.allow_cidrs, _PRESETS)


@dataclass(frozen=True)
class MediaSettings:
    host: str = "0.0.0.0"  # noqa: S104 - RTP arrives where the SDP says; see advertised_address
    """Address the RTP sockets bind to."""
    advertised_address: str | None = None
    """Address put in SDP ``c=`` lines; needed behind NAT/firewalls and in containers.
    When absent: ``media.host`` if it is a specific address, else the address of the
    interface that routes to the recording client."""
    port_min: int = 10000
    """Lowest RTP port (even)."""
    port_max: int = 20000
    """Highest RTP port."""
    srtp: Literal["allow", "require", "off"] = "allow"
    """SRTP policy: ``allow`` takes RTP/SAVP and RTP/AVP offers, ``require`` answers
    plain-RTP offers with 488, ``off`` declines SRTP m-lines."""
    source: tuple[str, ...] = ("offer", "signalling")
    """Where a stream takes RTP from, comma-separated: ``offer`` (the ``c=`` address of
    its m-line in the latest offer), ``signalling`` (the address the INVITE came from),
    or ``any``; and every address in ``allow_cidrs``.  Packets from elsewhere are dropped
    and counted (``foreign_source``).  Empty: only ``allow_cidrs``."""
    allow_cidrs: tuple[str, ...] = ()
    """More addresses RTP is taken from, comma-separated CIDRs; ``twilio`` expands to
    Twilio's media range (168.86.128.0/18)."""
    rtp_timeout_s: float = 60.0
    """A session that receives no RTP on any stream for this long ends (``timeout``)."""
    max_session_s: float = 4 * 3600.0
    """A session that lasts longer than this ends (``timeout``)."""
    workers: int = 0
    """Media worker processes, each with its slice of the RTP ports and the sessions
    assigned to it; 0: one per usable CPU; 1: one process does everything."""
    max_load: float = 0.85
    """A new session goes only to a media worker below this share of a core (measured
    each second); when every worker is above it, INVITEs get 503 with ``Retry-After``."""
    codecs: tuple[str, ...] = ()
    """Codecs answered, comma-separated SDP names in order of preference (PCMU, PCMA, G722,
    G729, opus, AMR, AMR-WB, iLBC, GSM, speex, L16).  Empty: every one the installed
    decoders take, the first one offered winning."""

    def worker_count(self) -> int:
        """``workers``, with 0 resolved to the CPUs this process may run on."""
        return self.workers or usable_cpus()

    def validate(self) -> None:
        _check_host("media.host", self.host)
        if self.advertised_address is not None:
            _check_ip("media.advertised_address", self.advertised_address)
        _check_range("media.port_min", self.port_min, 1024, 65534)
        _check_range("media.port_max", self.port_max, 1025, 65535)
        if self.port_min % 2:
            raise ConfigError(
                "media.port_min", f"must be even (RTP on even ports): {self.port_min}"
            )
        if self.port_max <= self.port_min:
            raise ConfigError(
                "media.port_max",
                f"must be above media.port_min: {self.port_max} <= {self.port_min}",
            )
        if self.srtp not in ("allow", "require", "off"):
            raise ConfigError("media.srtp", f"must be allow, require or off: {self.srtp!r}")
        unknown = [name for name in self.source if name.lower() not in _MEDIA_SOURCES]
        if unknown:
            raise ConfigError("media.source", f"must be offer, signalling or any: {unknown[0]!r}")
        networks = self.networks()
        if not self.source and not networks:
            raise ConfigError("media.source", "empty, and so is media.allow_cidrs: no RTP "
                              "would ever be recorded")
        _check_range("media.rtp_timeout_s", self.rtp_timeout_s, 1, 86400)
        _check_range("media.max_session_s", self.max_session_s, 1, 7 * 86400)
        _check_range("media.workers", self.workers, 0, 256)
        _check_range("media.max_load", self.max_load, 0.05, 1.0)
        ports = self.port_max - self.port_min + 1
        if ports < 4 * self.worker_count():
            raise ConfigError("media.workers", f"{self.worker_count()} workers need at least "
                              f"{4 * self.worker_count()} RTP ports; media.port_min-port_max "
                              f"has {ports}")

    def networks(self) -> tuple[IpNetwork, ...]:
        """``allow_cidrs`` with presets expanded."""
        return _networks("media.allow_cidrs", self.allow_cidrs, _MEDIA_PRESETS)


@dataclass(frozen=True)
class RecordingsSettings:
    dir: Path = Path("./recordings")
    """Where recordings are written: one directory per session under YYYY/MM/DD/."""
    capture: bool = False
    """Also write each session's SIP and RTP, as received, to capture.pcap in its directory
    (for srs replay and debugging). SIP over TLS is written decrypted and the SDP carries
    the SRTP keys: treat captures as secret."""
    min_free_mb: int = 1024
    """Below this much free space (MiB) on ``dir``, new INVITEs get 503 with Retry-After
    and ``/readyz`` fails; sessions in progress go on.  0 turns the check off."""
    retention_days: int = 0
    """Finished sessions (complete, interrupted, failed; never one still recording) that
    ended more than this many days ago are deleted, checked hourly.  0 keeps everything."""
    sample_rate: int = 0
    """Sample rate of every WAV (8000-48000 Hz); 0: each track at its codec's own rate
    (8 kHz for G.711, 16 kHz for G.722 and AMR-WB, 48 kHz for Opus)."""

    def validate(self) -> None:
        if str(self.dir) == "":
            raise ConfigError("recordings.dir", "must not be empty")
        _check_range("recordings.min_free_mb", self.min_free_mb, 0, 1 << 30)
        _check_range("recordings.retention_days", self.retention_days, 0, 36500)
        if self.sample_rate:
            _check_range("recordings.sample_rate", self.sample_rate, 8000, 48000)


@dataclass(frozen=True)
class ServerSettings:
    state_dir: Path = Path("./.srs-state")
    """Generated token, self-signed certificate and other state."""
    max_sessions: int = 500
    """Concurrent recording sessions; beyond it INVITEs get 503 with Retry-After."""

    def validate(self) -> None:
        if str(self.state_dir) == "":
            raise ConfigError("server.state_dir", "must not be empty")
        _check_range("server.max_sessions", self.max_sessions, 1, 100000)


@dataclass(frozen=True)
class WebhookSettings:
    url: str | None = None
    """When set, each finished session's ``session.json`` is POSTed here, signed (see
    "Completion webhook"); ``http://`` or ``https://``, redirects not followed."""
    secret: str | None = field(default=None, repr=False)
    """Shared secret of the ``X-Srs-Signature`` HMAC-SHA256; required with ``url``, at
    least 16 characters.  Never logged."""
    timeout_s: float = 10.0
    """Time allowed for one delivery attempt: connect, send, and the response head."""
    max_attempts: int = 10
    """Attempts per delivery before it is moved to ``<state_dir>/webhook/failed/``."""
    max_delay_s: float = 900.0
    """Longest wait between attempts; waits double from 5 s up to this, with jitter."""
    ca: Path | None = None
    """PEM CA bundle to trust for an ``https://`` url instead of the system store."""

    def validate(self) -> None:
        if self.url is None:
            return
        from srs.ops.webhook.signing import WebhookUrl  # raises ConfigError naming webhook.url

        WebhookUrl.parse(self.url, key="webhook.url")
        if self.secret is None or len(self.secret) < 16:
            # Never echo the secret back.
            raise ConfigError("webhook.secret", "required with webhook.url, at least 16 characters")
        _check_range("webhook.timeout_s", self.timeout_s, 0.1, 300)
        _check_range("webhook.max_attempts", self.max_attempts, 1, 100)
        _check_range("webhook.max_delay_s", self.max_delay_s, 5, 86400)
        if self.ca is not None and not self.ca.is_file():
            raise ConfigError("webhook.ca", f"no such file: {str(self.ca)!r}")


@dataclass(frozen=True)
class StreamSettings:
    url: tuple[str, ...] = ()
    """WebSocket URLs (``ws://`` or ``wss://``, comma-separated) that every recording
    session is streamed to live, one connection per session and URL (see "Live audio
    out").  Empty: nothing is streamed."""
    format: Literal["twilio", "l16"] = "twilio"
    """``twilio``: Twilio Media Streams JSON events (base64 mu-law at 8 kHz, 20 ms chunks);
    ``l16``: a JSON header, then binary 16-bit PCM frames at each track's own rate."""
    tracks: tuple[str, ...] = ("both",)
    """Which tracks: ``inbound``, ``outbound``, ``both``, or stream labels (comma-separated)."""
    headers: tuple[str, ...] = field(default=(), repr=False)
    """Extra HTTP headers of the WebSocket handshake, each ``Name: value`` (an
    ``Authorization: Bearer ...`` for the consumer).  Never logged.  In the environment
    the list is comma-separated: a value with a comma needs the TOML file."""
    ca: Path | None = None
    """PEM CA bundle to verify a ``wss://`` consumer with instead of the system store."""
    queue_ms: int = 2000
    """Audio each connection may hold unsent (per track); beyond it the oldest is dropped
    and counted, so a slow consumer never holds up the recording."""

    def validate(self) -> None:
        from srs.live.urls import LiveUrl  # raises ConfigError naming stream.url

        for url in self.url:
            LiveUrl.parse(url, key="stream.url")
        if len(self.url) > 8:
            raise ConfigError("stream.url", "at most 8 URLs")
        if self.format not in ("twilio", "l16"):
            raise ConfigError("stream.format", f"must be twilio or l16: {self.format!r}")
        if not self.tracks:
            raise ConfigError("stream.tracks", "name at least one track, or both")
        for number, header in enumerate(self.headers, start=1):
            name, colon, value = header.partition(":")
            if not colon or not _is_token(name.strip()) or any(
                    ch in "\r\n\0" for ch in value):
                # Never echo any of it: without its colon the whole entry may be the secret.
                raise ConfigError("stream.headers",
                                  f"entry {number} is not a 'Name: value' header")
        if self.ca is not None and not self.ca.is_file():
            raise ConfigError("stream.ca", f"no such file: {str(self.ca)!r}")
        _check_range("stream.queue_ms", self.queue_ms, 100, 60000)


@dataclass(frozen=True)
class ManagementSettings:
    host: str = "127.0.0.1"
    """Address of the HTTP listener for ``/healthz``, ``/readyz`` and ``/metrics``.  It
    is not authenticated: keep it on a private address."""
    port: int = 8080
    """Its TCP port; 0 disables it."""
    ephemeral_port: bool = False
    """Bind a port the system chooses instead of ``port``, and log it in the ``listening``
    event (as ``management``)."""

    def validate(self) -> None:
        _check_host("management.host", self.host)
        _check_port("management.port", self.port)
        if self.ephemeral_port and not self.port:
            raise ConfigError("management.ephemeral_port",
                              "nothing to bind: management.port is 0 (disabled)")


@dataclass(frozen=True)
class LogSettings:
    level: Literal["debug", "info", "warning", "error"] = "info"
    """Lowest level logged."""
    format: Literal["auto", "json", "console"] = "auto"
    """``auto``: JSON lines when stdout is not a terminal, coloured text when it is."""

    def validate(self) -> None:
        if self.level not in ("debug", "info", "warning", "error"):
            raise ConfigError("log.level", f"must be debug, info, warning or error: {self.level!r}")
        if self.format not in ("auto", "json", "console"):
            raise ConfigError("log.format", f"must be auto, json or console: {self.format!r}")


@dataclass(frozen=True)
class Settings:
    sip: SipSettings = field(default_factory=SipSettings)
    tls: TlsSettings = field(default_factory=TlsSettings)
    auth: AuthSettings = field(default_factory=AuthSettings)
    media: MediaSettings = field(default_factory=MediaSettings)
    recordings: RecordingsSettings = field(default_factory=RecordingsSettings)
    server: ServerSettings = field(default_factory=ServerSettings)
    webhook: WebhookSettings = field(default_factory=WebhookSettings)
    stream: StreamSettings = field(default_factory=StreamSettings)
    management: ManagementSettings = field(default_factory=ManagementSettings)
    log: LogSettings = field(default_factory=LogSettings)

    def validate(self) -> None:
        for f in dataclasses.fields(self):
            getattr(self, f.name).validate()


_SECTIONS: dict[str, type] = typing.get_type_hints(Settings)
# section -> key -> (where the value came from, for errors; the value as read)
_RawSettings = dict[str, dict[str, tuple[str, object]]]


def load_settings(
    path: Path | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Mapping[str, object]] | None = None,
) -> Settings:
    """Build and validate the settings tree.

    ``overrides`` (section -> key -> value) come from command-line flags and win over both
    the file and the environment.
    """
    raw: _RawSettings = {name: {} for name in _SECTIONS}
    if path is not None:
        _merge_file(raw, path)
    _merge_env(raw, os.environ if environ is None else environ)
    for section, values in (overrides or {}).items():
        for key, value in values.items():
            raw[section][key] = (f"{section}.{key}", value)
    # The one untyped step: Settings' own annotations chose each section's class (_SECTIONS).
    sections: dict[str, Any] = {name: _build(name, raw[name]) for name in _SECTIONS}
    settings = Settings(**sections)
    settings.validate()
    return settings


def _merge_file(raw: _RawSettings, path: Path) -> None:
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError("--config", f"no such file: {str(path)!r}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("--config", f"{path}: not valid TOML: {exc}") from None
    for section, values in data.items():
        if section not in _SECTIONS:
            raise ConfigError(section, f"unknown section in {path} (known: {', '.join(_SECTIONS)})")
        if not isinstance(values, dict):
            raise ConfigError(section, f"must be a table in {path}")
        for key, value in values.items():
            raw[section][key] = (f"{section}.{key}", value)


def service_link_names(environ: Mapping[str, str]) -> list[str]:
    """The ``SRS_*`` variables of ``environ`` that the loader leaves alone because they are
    Kubernetes service links (see ``_SERVICE_LINKS``), sorted."""
    return sorted(name for name, value in environ.items()
                  if name.startswith(ENV_PREFIX) and _is_service_link(name, value))


def _is_service_link(name: str, value: str) -> bool:
    return any(name_re.fullmatch(name) and value_re.fullmatch(value)
               for name_re, value_re in _SERVICE_LINKS)


def _merge_env(raw: _RawSettings, environ: Mapping[str, str]) -> None:
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX) or name.startswith(_CLIENT_ENV_PREFIXES):
            continue
        if _is_service_link(name, value):
            continue  # srs serve logs these names at debug level
        section, _, key = name[len(ENV_PREFIX) :].lower().partition("_")
        if section not in _SECTIONS or not key:
            raise ConfigError(name, f"unknown setting (sections: {', '.join(_SECTIONS)})")
        raw[section][key] = (name, value)


def _build(section: str, values: dict[str, tuple[str, object]]) -> object:
    cls = _SECTIONS[section]
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    kwargs: dict[str, object] = {}
    for key, (origin, value) in values.items():
        if key not in known:
            raise ConfigError(
                origin, f"unknown key (known in [{section}]: {', '.join(sorted(known))})"
            )
        kwargs[key] = _coerce(origin, hints[key], value)
    return cls(**kwargs)


def _coerce(origin: str, hint: object, value: object) -> object:
    """Turn a TOML value or an environment string into the field's type."""
    args = typing.get_args(hint)
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        inner = [a for a in args if a is not type(None)]
        if value is None or (isinstance(value, str) and value == ""):
            return None
        return _coerce(origin, inner[0], value)
    if typing.get_origin(hint) is Literal:
        if not isinstance(value, str) or value.lower() not in args:
            raise ConfigError(origin, f"must be one of {', '.join(args)}: {value!r}")
        return value.lower()
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on"):
            return True
        if isinstance(value, str) and value.lower() in ("0", "false", "no", "off"):
            return False
        raise ConfigError(origin, f"must be true or false: {value!r}")
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise ConfigError(origin, f"must be an integer: {value!r}")
        try:
            return int(value)
        except (TypeError, ValueError):
            raise ConfigError(origin, f"must be an integer: {value!r}") from None
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise ConfigError(origin, f"must be a number: {value!r}")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(origin, f"must be a number: {value!r}") from None
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(origin, f"must be a string: {value!r}")
        return value
    if hint is Path:
        if not isinstance(value, str):
            raise ConfigError(origin, f"must be a path string: {value!r}")
        return Path(value)
    if typing.get_origin(hint) is tuple:
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
            raise ConfigError(origin, "must be a list of strings or a comma-separated string")
        return tuple(i.strip() for i in items if i.strip())
    raise TypeError(f"no coercion for {hint!r}")  # a field type this loader does not know: a bug
