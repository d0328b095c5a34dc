import { existsSync, readdirSync } from "node:fs";
import path from "node:path";
import { defineConfig } from "prisma/config";

// Offline machines: every Prisma CLI command downloads the native schema engine first unless one is
// present. `generate` never runs it, so a stub is enough; migrations go through scripts/prisma-wasm-migrate.mjs.
const root = import.meta.dirname;
const enginesDir = path.join(root, "node_modules/@prisma/engines");
const hasNativeEngine = existsSync(enginesDir) && readdirSync(enginesDir).some((file) => file.startsWith("schema-engine-"));
if (!process.env.PRISMA_SCHEMA_ENGINE_BINARY && !hasNativeEngine) {
  process.env.PRISMA_SCHEMA_ENGINE_BINARY = path.join(root, "scripts/schema-engine-stub.sh");
}

export default defineConfig({
  schema: "prisma/schema.prisma",
  migrations: { path: "prisma/migrations" },
  datasource: { url: process.env.DATABASE_URL ?? "postgresql://postgres@127.0.0.1:5432/expert_jobs" },
});
