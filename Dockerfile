# srs: SIPREC session recording server.
#   docker build -t srs .
#   docker run --network host -v srs-recordings:/var/lib/srs/recordings \
#       -v srs-state:/var/lib/srs/state -e SRS_MEDIA_ADVERTISED_ADDRESS=203.0.113.10 srs
# Host networking is recommended: RTP uses one UDP port per stream (media.port_min-max).

FROM debian:bookworm-slim AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv python3-dev gcc libc6-dev \
 && rm -rf /var/lib/apt/lists/*
COPY pyproject.toml README.md /src/
COPY srs /src/srs
RUN python3 -m venv /opt/srs \
 && /opt/srs/bin/pip install --no-cache-dir /src

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 libsndfile1 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 999 srs \
 && useradd --system --uid 999 --gid 999 --home-dir /var/lib/srs --create-home srs \
 && mkdir -p /var/lib/srs/recordings /var/lib/srs/state \
 && chown -R srs:srs /var/lib/srs
COPY --from=build /opt/srs /opt/srs
ENV PATH=/opt/srs/bin:$PATH \
    SRS_RECORDINGS_DIR=/var/lib/srs/recordings \
    SRS_SERVER_STATE_DIR=/var/lib/srs/state \
    SRS_LOG_FORMAT=json
USER srs
WORKDIR /var/lib/srs
VOLUME ["/var/lib/srs/recordings", "/var/lib/srs/state"]
# SIP over UDP/TCP and TLS; RTP uses media.port_min-media.port_max (default 10000-20000/udp).
EXPOSE 5060/udp 5060/tcp 5061/tcp
STOPSIGNAL SIGTERM
ENTRYPOINT ["srs", "serve"]
