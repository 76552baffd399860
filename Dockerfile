# syntax=docker/dockerfile:1
# The stormlock image: FROM scratch, holding the standalone Linux binary, the
# glibc libraries it links, CA certificates and a non-root user. The build
# stage compiles the binary and runs scripts/rootfs.ts, which assembles the
# root filesystem; tests/rootfs_test.ts chroots into the same folder.
#
#   docker build -t stormlock .
#   docker run --rm -v stormlock-state:/home/stormlock/.local/state stormlock acquire deploy
#   docker run -p 7878:7878 -e STORMLOCK_SERVE_TOKEN=… stormlock serve --listen 0.0.0.0:7878

ARG DENO_VERSION=2.9.6

FROM denoland/deno:bin-${DENO_VERSION} AS deno

FROM debian:bookworm-slim AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY --from=deno /deno /usr/local/bin/deno
WORKDIR /src
COPY . .
# Docker's TARGETARCH picks the binary: amd64 or arm64.
ARG TARGETARCH
RUN case "${TARGETARCH:-amd64}" in \
      amd64) target=x86_64-unknown-linux-gnu ;; \
      arm64) target=aarch64-unknown-linux-gnu ;; \
      *) echo "no stormlock binary for ${TARGETARCH}" >&2; exit 1 ;; \
    esac \
 && deno task compile --target "$target" --out /dist \
 && cp "/dist/stormlock-$target" /dist/stormlock
RUN deno run --allow-read --allow-write --allow-run=ldd scripts/rootfs.ts --binary /dist/stormlock --out /rootfs

FROM scratch
COPY --from=build /rootfs/ /
# The user's home, with its .local/state: a volume mounted on that state
# folder takes its owner from the image, so uid 65532 can write there.
COPY --from=build --chown=65532:65532 /rootfs/home/stormlock/ /home/stormlock/
USER 65532:65532
ENV PATH=/usr/local/bin
ENV HOME=/home/stormlock
ENV USER=stormlock
ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
ENV DENO_TLS_CA_STORE=system
WORKDIR /home/stormlock
# `stormlock serve --listen 0.0.0.0:7878` (with a token); GET /healthz.
EXPOSE 7878
ENTRYPOINT ["/usr/local/bin/stormlock"]
CMD ["--help"]
