# srs: SIPREC session recording server.
#
#   docker build -t srs .
#   docker run --network host -v srs-recordings:/var/lib/srs/recordings \
#       -v srs-state:/var/lib/srs/state -e SRS_AUTH_TOKENS=... \
#       -e SRS_MEDIA_ADVERTISED_ADDRESS=203.0.113.10 srs
#
# Host networking is recommended: RTP uses one UDP port per stream, from media.port_min to
# media.port_max (SRS_MEDIA_PORT_MIN/MAX, 10000-20000 by default; EXPOSE below).  Every
# setting comes from an SRS_* variable (the README's configuration table); arguments after
# the image name go to `srs serve` (e.g. --config /etc/srs/srs.toml from a mounted file).
#
# Builds from a plain Debian base image and needs only a Debian mirror (the base image's
# apt sources) and a Python package index.  Where the index is a mirror, pass pip's
# settings as build arguments, e.g.
#   docker build --build-arg PIP_INDEX_URL=https://pypi.example.org/simple \
#       --build-arg PIP_CERT=/etc/ssl/certs/ca-certificates.crt -t srs .
# (PIP_CERT names the system bundle, which includes a private CA that was added to the
# base image under /usr/local/share/ca-certificates.)  Build with --format docker under
# podman/buildah, or the HEALTHCHECK is dropped.

FROM debian:bookworm-slim AS build
ARG PIP_INDEX_URL
ARG PIP_EXTRA_INDEX_URL
ARG PIP_FIND_LINKS
ARG PIP_TRUSTED_HOST
ARG PIP_CERT
ARG PIP_DEFAULT_TIMEOUT=60
# ca-certificates: Debian's pip verifies the index against the system bundle.  Without gcc
# and python3-dev the optional compiled RTP receiver and timeline walk (setup.py) are
# skipped and srs receives and places packets in Python (srs/server/media.py,
# srs/rtp/track.py).
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        ca-certificates python3 python3-venv \
 && rm -rf /var/lib/apt/lists/*
COPY pyproject.toml setup.py README.md /src/
COPY srs /src/srs
RUN python3 -m venv /opt/srs \
 && /opt/srs/bin/pip install --no-cache-dir --disable-pip-version-check /src \
 && /opt/srs/bin/srs --help >/dev/null

FROM debian:bookworm-slim
# ca-certificates: webhook deliveries over HTTPS verify the receiver against them.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        ca-certificates python3 libsndfile1 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 999 srs \
 && useradd --system --uid 999 --gid 999 --home-dir /var/lib/srs --create-home \
        --shell /usr/sbin/nologin srs \
 && mkdir -p /var/lib/srs/recordings /var/lib/srs/state \
 && chown -R srs:srs /var/lib/srs
COPY --from=build /opt/srs /opt/srs
ENV PATH=/opt/srs/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    SRS_RECORDINGS_DIR=/var/lib/srs/recordings \
    SRS_SERVER_STATE_DIR=/var/lib/srs/state \
    SRS_LOG_FORMAT=json
USER srs
WORKDIR /var/lib/srs
VOLUME ["/var/lib/srs/recordings", "/var/lib/srs/state"]
# SIP over UDP and TCP (sip.port) and TLS (sip.tls_port); RTP on media.port_min-port_max.
# The management listener (/healthz, /readyz, /metrics; management.port 8080) binds to
# 127.0.0.1 by default and is not exposed.
EXPOSE 5060/udp 5060/tcp 5061/tcp 10000-20000/udp
# GET /healthz on the management listener, where SRS_MANAGEMENT_HOST/PORT put it (python3 is
# in the image, no curl needed).  It fails when the event loop is blocked, and also when
# the listener is disabled (SRS_MANAGEMENT_PORT=0) or moved by a --config file only: run
# with --no-healthcheck then.  Podman without systemd runs it only on `podman healthcheck run`.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python3", "-c", "import os, urllib.request as r; h = os.environ.get('SRS_MANAGEMENT_HOST', '127.0.0.1'); h = {'0.0.0.0': '127.0.0.1', '::': '::1'}.get(h, h); h = '[' + h + ']' if ':' in h else h; r.urlopen('http://%s:%s/healthz' % (h, os.environ.get('SRS_MANAGEMENT_PORT', '8080')), timeout=4)"]
# srs runs as PID 1: its own SIGTERM handler stops taking sessions, sends BYE on each
# active one and finalises its files before exiting.
STOPSIGNAL SIGTERM
ENTRYPOINT ["srs", "serve"]
