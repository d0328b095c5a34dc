import path from "node:path";
import { defaultServerConditions } from "vite";
import { defineConfig } from "vitest/config";

export default defineConfig({
  // Workspace packages (packages/*) resolve to their TypeScript sources, so tests need no build first.
  ssr: { resolve: { conditions: ["source", ...defaultServerConditions] } },
  test: {
    include: ["test/**/*.test.ts"],
    globalSetup: ["test/global-setup.ts"],
    pool: "forks",
    maxWorkers: 2,
    testTimeout: 30_000,
    hookTimeout: 60_000,
    // The default reporter only counts skipped tests; the second one lists them with their reasons.
    reporters: ["default", path.join(import.meta.dirname, "test/reporters/skip-reasons.ts")],
  },
});
