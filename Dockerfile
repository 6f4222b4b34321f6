# syntax=docker/dockerfile:1
#
# The Kumo server image (docs/deploy.md):
#
#   docker build -t kumo:0.1.0 .
#   docker run -d --name kumo1 -p 7001:7001 -p 7002:7002 -v kumo1:/var/lib/kumo \
#     -e KUMO_ID=n1 -e KUMO_PEER=10.0.0.11:7000 -e KUMO_JOIN=n2=10.0.0.12:7000,n3=10.0.0.13:7000 \
#     -e KUMO_TOKENS=... kumo:0.1.0
#
# Configuration is `kumo server`'s: KUMO_* variables (or flags after the image name, or a YAML
# file given with --config). The image sets KUMO_DATA, KUMO_API and KUMO_S3 (below); variables
# win over the file, so to take those three from a file, pass them empty (-e KUMO_API=).

ARG NODE_IMAGE=node:20-bookworm-slim

# ---- build: compile the TypeScript and the web console -------------------------------------
FROM ${NODE_IMAGE} AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json ./
COPY src ./src
COPY console ./console
COPY proto ./proto
RUN npm run build

# ---- runtime: production dependencies and the build output only ----------------------------
FROM ${NODE_IMAGE} AS runtime
ENV NODE_ENV=production
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force
# dist/src: the server and the CLI; dist/console: the web console it serves at /console/;
# proto/: the gRPC schemas, loaded at run time by @grpc/proto-loader (src/transport/protos.ts);
# package.json (above): the version reported by /metrics and the console.
COPY --from=build /src/dist/src ./dist/src
COPY --from=build /src/dist/console ./dist/console
COPY proto ./proto
# The health check below and the Kubernetes init container (deploy/kubernetes/statefulset.yaml).
COPY deploy/docker/healthcheck.mjs deploy/docker/pod-config.mjs ./deploy/
RUN groupadd --system --gid 10001 kumo \
 && useradd --system --uid 10001 --gid kumo --home-dir /var/lib/kumo --no-create-home \
      --shell /usr/sbin/nologin kumo \
 && mkdir -p /var/lib/kumo \
 && chown kumo:kumo /var/lib/kumo \
 && chmod 0750 /var/lib/kumo
USER 10001:10001
ENV KUMO_DATA=/var/lib/kumo \
    KUMO_API=0.0.0.0:7001 \
    KUMO_S3=0.0.0.0:7002
VOLUME ["/var/lib/kumo"]
# 7000: node-to-node gRPC (set KUMO_PEER to an address the other nodes reach: it is advertised);
# 7001: KV and admin HTTP API, /healthz, /readyz, /metrics, /console/; 7002: S3.
EXPOSE 7000 7001 7002
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=6 \
  CMD ["node", "/app/deploy/healthcheck.mjs"]
ENTRYPOINT ["node", "/app/dist/src/cli/main.js"]
CMD ["server"]
