# syntax=docker/dockerfile:1

# Production dependencies; npm ci's postinstall runs `prisma generate` into src/generated/prisma.
FROM node:24-slim AS deps
WORKDIR /app
COPY package.json package-lock.json prisma.config.ts ./
COPY packages/client/package.json packages/client/
COPY packages/contract/package.json packages/contract/
COPY prisma ./prisma
COPY scripts ./scripts
RUN npm ci --omit=dev --no-audit --no-fund

FROM node:24-slim
WORKDIR /app
ENV HOST=0.0.0.0 \
    PORT=3000 \
    DATA_DIR=/app/.data
COPY --from=deps /app/node_modules ./node_modules
COPY --from=deps /app/src/generated ./src/generated
COPY package.json prisma.config.ts ./
COPY prisma ./prisma
COPY src ./src
# The API's schemas: the server imports their sources (`#contract/*` in package.json).
COPY packages/contract/package.json packages/contract/
COPY packages/contract/src ./packages/contract/src
# Only PGlite (no DATABASE_URL) writes here; mount a volume on it to keep the data.
RUN mkdir -p /app/.data && chown node:node /app/.data
USER node
EXPOSE 3000
# node:24-slim has no curl or wget; Node's fetch does the check.
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.PORT || 3000) + '/healthz').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
# Node itself as PID 1 (not npm), so SIGTERM reaches the server's graceful shutdown.
CMD ["node", "--import", "./src/startup/require-node.mjs", "--import", "tsx", "src/server.ts"]
