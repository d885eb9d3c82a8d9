# syntax=docker/dockerfile:1
# One image for the manager and the agents: both are subcommands of one static binary.

# The builder runs on the build host's platform and cross-compiles (no emulation needed).
FROM --platform=$BUILDPLATFORM golang:1.26 AS builder
ARG TARGETOS
ARG TARGETARCH
WORKDIR /src
COPY go.mod go.sum ./
COPY . .
# Cache mounts instead of `go mod download`: go.mod also lists tools (helm, golangci-lint)
# whose dependencies the binary does not need.
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=${TARGETOS:-linux} GOARCH=${TARGETARCH} \
    go build -trimpath -ldflags="-s -w" -o /firmware-operator .

# No shell, no package manager; CA certificates and /etc/passwd for nonroot only.
FROM gcr.io/distroless/static:nonroot
COPY --from=builder /firmware-operator /firmware-operator
# Numeric, so that runAsNonRoot can verify it. The binary deliberately carries no file
# capabilities: exec of such a file fails in a container that drops ALL, as the manager does.
# Agent pods get NET_BIND_SERVICE (and nothing else) from their securityContext for port 80.
USER 65532:65532
ENTRYPOINT ["/firmware-operator"]
