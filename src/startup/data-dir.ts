import { constants } from "node:fs";
import { access, mkdir, rm, stat, writeFile } from "node:fs/promises";
import path from "node:path";
import { StartupError, errorCode } from "./startup-error.ts";

/**
 * Creates `dir` one level at a time. Node's `mkdir(…, {recursive: true})` never returns on a path it
 * cannot create under an existing folder (`/proc/x`: ENOENT, then EEXIST for the parent, forever).
 */
export async function makeDirectory(dir: string): Promise<void> {
  const absolute = path.resolve(dir);
  const levels = absolute.split(path.sep).filter(Boolean);
  for (let depth = 1; depth <= levels.length; depth++) {
    const level = path.join(path.parse(absolute).root, ...levels.slice(0, depth));
    try {
      await mkdir(level);
    } catch (error) {
      if (errorCode(error) !== "EEXIST") throw error;
      if (!(await stat(level)).isDirectory()) {
        throw Object.assign(new Error(`${level} is a file, not a folder`), { code: "ENOTDIR", path: level });
      }
    }
  }
}

const reasons: Record<string, (failedPath: string) => string> = {
  ENOTDIR: (failed) => `${failed} is a file, not a folder (ENOTDIR): set DATA_DIR to a folder`,
  EACCES: (failed) =>
    `the server's user may not write to ${failed} (EACCES): give it write access, or set DATA_DIR to a folder it can write`,
  EPERM: (failed) =>
    `writing to ${failed} is not permitted (EPERM): give the server's user write access, or set DATA_DIR to a folder it can write`,
  EROFS: (failed) =>
    `${failed} is on a read-only file system (EROFS): set DATA_DIR to a writable folder (in a container, a mounted volume)`,
  ENOSPC: (failed) => `no space left on the device of ${failed} (ENOSPC): free some space, or set DATA_DIR to another disk`,
  ENOENT: (failed) => `${failed} cannot be created (ENOENT): set DATA_DIR to a folder on an ordinary file system`,
};

/**
 * Makes sure DATA_DIR exists and takes new files, before anything is stored there (PGlite's files, the
 * generated secrets key); a failure becomes one line saying what to change.
 */
export async function prepareDataDir(dataDir: string): Promise<void> {
  const probe = path.join(dataDir, `.write-test-${process.pid}`);
  try {
    await makeDirectory(dataDir);
    await access(dataDir, constants.W_OK);
    await writeFile(probe, "");
    await rm(probe);
  } catch (error) {
    const code = errorCode(error) ?? "";
    const failedPath = (error as NodeJS.ErrnoException).path ?? dataDir;
    const reason = reasons[code]?.(failedPath) ?? `${failedPath}: ${(error as Error).message}`;
    throw new StartupError(`DATA_DIR=${dataDir}: ${reason}`, { cause: error });
  }
}
