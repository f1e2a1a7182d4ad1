# Multi-stage build of the release binary; runs as a non-root user.
#   docker build -t aigate .
#   docker run -p 8080:8080 -e OPENAI_API_KEY -e AIGATE_KEY=<a key clients will send> aigate
# It listens on 0.0.0.0 in the container, so it refuses to start without a gateway
# key (AIGATE_KEY, or `keys:` in a mounted config): the provider keys are not lent
# to whoever reaches the port.
# Config lives at /etc/aigate/aigate.yaml (the repo's conf/ is copied to /etc/aigate).
FROM rust:1-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends cmake && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY conf ./conf
COPY benches ./benches
RUN cargo build --profile dist --bin aigate

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --no-create-home aigate
COPY --from=build /src/target/dist/aigate /usr/local/bin/aigate
COPY conf /etc/aigate
USER aigate
ENV AIGATE_LISTEN=0.0.0.0:8080 AIGATE_ADMIN_LISTEN=0.0.0.0:9091 RUST_LOG=info
EXPOSE 8080 9091
HEALTHCHECK --interval=10s --timeout=3s CMD curl -fsS http://127.0.0.1:9091/health/live || exit 1
ENTRYPOINT ["/usr/local/bin/aigate"]
CMD ["-c", "/etc/aigate/aigate.yaml"]
