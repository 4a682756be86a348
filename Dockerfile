# syntax=docker/dockerfile:1
# Multi-stage build: compile in the Rust image, run in a small Debian image as a non-root user.
# Targets: `gateway` (default) and `vendor-sim` (test equipment, used by docker-compose).

FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock build.rs ./
COPY src ./src
COPY migrations ./migrations
COPY openapi ./openapi
COPY vendor-sim ./vendor-sim
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p print-gateway -p vendor-sim \
    && mkdir -p /out \
    && cp target/release/print-gateway target/release/vendor-sim /out/

FROM debian:bookworm-slim AS runtime-base
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates tini \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin app
USER 10001
ENTRYPOINT ["/usr/bin/tini", "--"]

FROM runtime-base AS vendor-sim
COPY --from=build /out/vendor-sim /usr/local/bin/vendor-sim
ENV SIM_BIND=0.0.0.0:9000
EXPOSE 9000
# A TCP connect to its port (the slim image has bash, not curl).
HEALTHCHECK --interval=5s --timeout=3s --start-period=5s --retries=5 \
    CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/9000"]
CMD ["vendor-sim", "--demo-fixtures", "--allow-http-callbacks"]

FROM runtime-base AS gateway
COPY --from=build /out/print-gateway /usr/local/bin/print-gateway
ENV BIND_ADDR=0.0.0.0:8080 \
    LOG_FORMAT=json
EXPOSE 8080
# GET /healthz on the API port (HEALTHCHECK_URL to change it; a worker-only container has
# no HTTP: disable it there with `--no-healthcheck` or a compose `healthcheck: disable`).
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["print-gateway", "healthcheck"]
CMD ["print-gateway", "serve"]
