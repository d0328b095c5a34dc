import { mkdtemp, rm, symlink } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";

const root = path.resolve(import.meta.dirname, "../..");

/**
 * A working folder like a fresh clone's: the repository's files linked in, so `npm start` and
 * `npm run cli` work there, while `.env`, `.data` and anything else written stay in the folder.
 */
export async function createWorkingFolder(): Promise<{ dir: string; remove(): Promise<void> }> {
  const dir = await mkdtemp(path.join(tmpdir(), "ej-work-"));
  for (const entry of [
    "package.json",
    "package-lock.json",
    "node_modules",
    "src",
    "prisma",
    "prisma.config.ts",
    "tsconfig.json",
    "examples",
    "packages",
  ]) {
    await symlink(path.join(root, entry), path.join(dir, entry));
  }
  return { dir, remove: () => rm(dir, { recursive: true, force: true }) };
}
