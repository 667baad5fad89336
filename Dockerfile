# syntax=docker/dockerfile:1
# otpd's container image: built with the exact command scripts/test runs
# (`cargo build --release --locked --bin otpd`), run as a non-root user on a
# distroless base (no shell; the health check is `otpd healthcheck`).

FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin otpd

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/otpd /usr/local/bin/otpd
USER nonroot:nonroot
# The API and the metrics listener (http.metrics_listen).
EXPOSE 8080 9464
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD ["/usr/local/bin/otpd", "healthcheck", "--addr", "127.0.0.1:8080"]
ENTRYPOINT ["/usr/local/bin/otpd"]
CMD ["--config", "/etc/otpd/otpd.toml"]
