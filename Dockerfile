# syntax=docker/dockerfile:1
#
# The `auren` binary in a small Debian runtime image, running as a non-root user.
#
#   docker build -t auren:local .
#   docker run --rm -p 8000:8000 -p 9000:9000 -e AUREN_DEV_MODE=1 auren:local          # serve
#   docker run --rm auren:local bridge                                                # any command
#
# The build stage compiles librdkafka from source (its own ./configure and make, with zlib and
# OpenSSL from the system for TLS and SASL SCRAM; no zstd or curl) and links it statically, and
# SQLite is bundled by rusqlite, so the runtime needs only libc, libgcc, zlib and libssl3 (all in
# debian:bookworm-slim). Every other TLS client and the HTTPS listener use rustls. Cache mounts keep the cargo registry and target directory
# between builds (BuildKit, the default builder of current Docker).

ARG RUST_VERSION=1

FROM rust:${RUST_VERSION}-bookworm AS build
# rust:bookworm already has most of these; listed so the build does not depend on that.
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential pkg-config zlib1g-dev libssl-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# .git stays out of the build context: pass the revision for auren_build_info and --version,
# e.g. --build-arg AUREN_GIT_REVISION=$(git rev-parse --short=12 HEAD). Unset, it is `unknown`.
ARG AUREN_GIT_REVISION
COPY Cargo.toml Cargo.lock ./
COPY crates crates
# include_str! reads the thresholds file from here at compile time (tests of auren-core).
COPY config config
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p auren --bin auren \
 && install -m 0755 target/release/auren /usr/local/bin/auren

FROM debian:bookworm-slim AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libssl3 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 auren \
 && useradd --system --uid 10001 --gid auren --home-dir /var/lib/auren --shell /usr/sbin/nologin auren \
 && install -d -o auren -g auren -m 0750 /var/lib/auren
COPY --from=build /usr/local/bin/auren /usr/local/bin/auren
COPY --chmod=0755 deploy/docker/healthcheck.sh /usr/local/bin/auren-healthcheck
# The shipped thresholds (the built-in defaults, written out). Mount a directory over /etc/auren
# to change them: the file is reloaded when it changes.
COPY config/biometric_thresholds.yaml /etc/auren/biometric_thresholds.yaml
ENV AUREN_DATA_DIR=/var/lib/auren \
    BIOMETRIC_CONFIG=/etc/auren/biometric_thresholds.yaml
USER 10001:10001
WORKDIR /var/lib/auren
# AUREN_HTTP_ADDR (webhooks and API) and AUREN_METRICS_ADDR (/metrics): their defaults.
EXPOSE 8000 9000
# GET /health on the API port; `auren bridge` has no API: its containers override this with
# `auren-healthcheck 9000 /metrics` (deploy/compose.yaml does).
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 CMD ["auren-healthcheck"]
ENTRYPOINT ["auren"]
CMD ["serve"]
