# syntax=docker/dockerfile:1
#
# scim-agent container image.
#
#   docker build -t scim-agent .
#   docker run --rm -e MYSQL_DSN=... -e SCIM_BASE_URL=... -e SCIM_TOKEN=... \
#     -v scim-agent-state:/var/lib/scim-agent -p 9464:9464 scim-agent
#
# Version: `scim-agent version` reads the version from the Go build info
# (runtime/debug.ReadBuildInfo), which the go command stamps from Git;
# there is no -X variable to set, so no ARG VERSION. The build context
# therefore includes .git (see .dockerignore) and the build uses
# -buildvcs=true, and the image reports:
#   - on a commit tagged vX.Y.Z with a clean tree: "scim-agent vX.Y.Z"
#     and "revision <commit> (<commit time>)";
#   - on any other commit: a pseudo-version such as
#     "v0.0.0-20261128131445-d159b40ce18e" (or vX.Y.(Z+1)-0.<time>-<commit>
#     after a tag), with the same revision line;
#   - "+dirty" after both when the context held uncommitted changes
#     (modified tracked files, or untracked files that .gitignore does
#     not ignore).
# A shallow clone without tags gives the pseudo-version. A context
# without .git (a source tarball) fails the build unless it is built with
# --build-arg BUILDVCS=false, and then reports "(devel)" with no revision.

ARG GO_VERSION=1.26

FROM golang:${GO_VERSION} AS build
WORKDIR /src
# Modules first, so that a source change reuses the download layer.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
ARG BUILDVCS=true
# CGO off: a static binary for the distroless static image (no libc).
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -trimpath -buildvcs=${BUILDVCS} -ldflags="-s -w" \
      -o /out/scim-agent ./cmd/scim-agent && \
    /out/scim-agent version && \
    mkdir -p /out/state

# distroless static: CA certificates, tzdata, /etc/passwd with nonroot
# (65532), no shell, no package manager.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/scim-agent /usr/local/bin/scim-agent
# The container's config: every value from the environment, admin
# listener on every interface (probes and scrapes come from outside the
# container). Mount your own over it to change anything else.
COPY deploy/docker/config.yaml /etc/scim-agent/config.yaml
# The state directory belongs to the agent's user, so that a fresh named
# volume mounted here inherits that ownership.
COPY --from=build --chown=65532:65532 /out/state /var/lib/scim-agent
USER 65532:65532
WORKDIR /var/lib/scim-agent
VOLUME ["/var/lib/scim-agent"]
# Admin listener: GET /healthz, /readyz, /metrics, /status. The control
# endpoints (/sync, /retry, /approve-deletes) are served only on the Unix
# socket /var/lib/scim-agent/state.db.sock (mode 0600), which
# `docker exec <c> scim-agent status|retry|...` reaches.
EXPOSE 9464
ENTRYPOINT ["/usr/local/bin/scim-agent"]
CMD ["run", "--config", "/etc/scim-agent/config.yaml"]
