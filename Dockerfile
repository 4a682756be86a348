# syntax=docker/dockerfile:1
# Multi-stage build: compile in the Rust image, run in a small Debian image as a non-root user.
# Targets: `gateway` (default) and `vendor-sim` (test equipment, used by docker-compose).

FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
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
CMD ["vendor-sim", "--demo-fixtures", "--allow-http-callbacks"]

FROM runtime-base AS gateway
COPY --from=build /out/print-gateway /usr/local/bin/print-gateway
ENV BIND_ADDR=0.0.0.0:8080 \
    LOG_FORMAT=json
EXPOSE 8080
CMD ["print-gateway", "serve"]
