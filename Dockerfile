# lbgw container image, for those with a Docker/BuildKit engine. Without one, use
# `cargo xtask image --output DIR` (an OCI image layout of the same static binary).
#
# The eBPF object is compiled by lbgw's build script with nightly + bpf-linker, which
# `cargo xtask setup` installs (bpf-linker built against nightly's own LLVM).
FROM rust:1.95-bookworm AS build
RUN rustup toolchain install nightly --component rust-src \
 && rustup target add x86_64-unknown-linux-musl \
 && apt-get update && apt-get install -y --no-install-recommends musl-tools && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo xtask setup \
 && cargo build --release --locked -p lbgw --target x86_64-unknown-linux-musl

FROM scratch
COPY --from=build /src/target/x86_64-unknown-linux-musl/release/lbgw /usr/local/bin/lbgw
ENTRYPOINT ["/usr/local/bin/lbgw"]
CMD ["run", "--kubernetes"]
