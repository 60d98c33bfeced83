"""``srs serve``: process set-up around the asyncio application.

Resolves the credential (configured, stored, or generated and printed once), the TLS
material (configured, or a self-signed certificate generated into the state directory), the
event loop (uvloop when installed), and the signals: SIGTERM and SIGINT stop taking new
sessions and finalise every active one before exiting.
"""

from __future__ import annotations

import asyncio
import os
import signal
import ssl
import sys
from dataclasses import replace

from srs.config import Settings, service_link_names
from srs.errors import ConfigError
from srs.log import Logger, configure_logging, get_logger
from srs.server.app import Application
from srs.server.credentials import load_or_create_token
from srs.server.heap import settle_heap
from srs.server.tls import certificate_fingerprint, ensure_self_signed, server_context

__all__ = ["run", "resolve_tokens"]


def resolve_tokens(settings: Settings, *, no_auth: bool) -> tuple[Settings, bool]:
    """Fill ``auth.tokens`` from the state directory when none are configured.

    Returns the settings and whether a token was generated now.
    """
    if no_auth or settings.auth.tokens:
        return settings, False
    token, created = load_or_create_token(settings.server.state_dir)
    return replace(settings, auth=replace(settings.auth, tokens=(token,))), created


def _print_new_token(settings: Settings, token: str) -> None:
    # Printed once, to stderr, on the start that generated it: never logged.
    print(
        "\n"
        f"srs generated a credential for recording clients (stored in "
        f"{settings.server.state_dir / 'auth-token'}):\n\n"
        f"    {settings.auth.header}: {token}\n\n"
        "Give this header name and value to the recording client (for Twilio: the SIPREC\n"
        "connector's credentials header name and value). It is not shown again.\n",
        file=sys.stderr,
        flush=True,
    )


def run(settings: Settings, *, no_auth: bool) -> int:
    configure_logging(settings.log.level, settings.log.format)
    log = get_logger()
    ignored = service_link_names(os.environ)
    if ignored:
        log.debug("environment_ignored", names=ignored, reason="Kubernetes service links")
    try:
        settings, created = resolve_tokens(settings, no_auth=no_auth)
    except OSError as exc:
        print(f"srs: cannot start: server.state_dir: {exc}", file=sys.stderr, flush=True)
        return 2
    if created:
        _print_new_token(settings, settings.auth.tokens[0])
    tls_context = None
    if settings.sip.tls_port:
        cert, key = settings.tls.cert, settings.tls.key
        if cert is None or key is None:
            cert, key, generated = ensure_self_signed(settings.server.state_dir)
            log.info(
                "tls_self_signed",
                cert=str(cert),
                generated=generated,
                sha256_fingerprint=certificate_fingerprint(cert),
            )
        try:
            tls_context = server_context(cert, key, settings.tls)
        except (OSError, ssl.SSLError) as exc:
            print(f"srs: cannot start: tls.cert: cannot load {cert} / {key}: {exc}",
                  file=sys.stderr, flush=True)
            return 2
    reloadable = (tls_context is not None and settings.tls.cert is not None
                  and settings.tls.key is not None)
    main = _main(settings, tls_context, auth_enabled=not no_auth, log=log,
                 reload_tls_on_hup=reloadable)
    try:
        import uvloop
    except ImportError:  # uvloop is not built for every platform
        return asyncio.run(main)
    return uvloop.run(main)


def reload_tls(app: Application, settings: Settings, log: Logger) -> None:
    """SIGHUP: build a new context from the configured certificate, key and CA files and
    give it to the listener for the connections it accepts from now on.

    A new context, not the old one loaded again: ``load_verify_locations`` only adds to a
    context's trust store, so a CA removed from ``tls.ca`` would otherwise stay trusted.
    Established connections (and the sessions on them) keep the context they were made
    with.  A broken file keeps the old context and is logged.
    """
    cert, key = settings.tls.cert, settings.tls.key
    if cert is None or key is None:
        return
    try:
        context = server_context(cert, key, settings.tls)
    except (OSError, ssl.SSLError) as exc:
        log.error("tls_reload_failed", cert=str(cert), error=str(exc))
        return
    app.tls_context = app.transports.tls_context = context
    log.info("tls_reloaded", cert=str(cert), sha256_fingerprint=certificate_fingerprint(cert))


async def _main(settings: Settings, tls_context: object, *, auth_enabled: bool, log: Logger,
                reload_tls_on_hup: bool) -> int:
    app = Application(settings, tls_context=tls_context, auth_enabled=auth_enabled)  # type: ignore[arg-type]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    if reload_tls_on_hup:
        loop.add_signal_handler(signal.SIGHUP, reload_tls, app, settings, log)
    try:
        await app.start()
    except ConfigError as exc:
        print(f"srs: cannot start: {exc}", file=sys.stderr, flush=True)
        return 2
    settle_heap()
    try:
        await stop.wait()
    finally:
        await app.shutdown()
    return 0
