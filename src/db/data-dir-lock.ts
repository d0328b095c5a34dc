import { link, mkdir, readFile, rm, stat, unlink, writeFile } from "node:fs/promises";
import { makeDirectory } from "../startup/data-dir.ts";
import { readFileSync, unlinkSync } from "node:fs";
import { randomBytes } from "node:crypto";
import { StartupError } from "../errors.ts";

/** Who holds a lock: a process id, and when that process started (a pid alone is reused, by containers restarting as pid 1 above all). */
interface Holder {
  pid: number;
  startedAt: number;
}

export interface DataDirLock {
  readonly path: string;
  release(): Promise<void>;
}

const processStartedAt = () => Math.round(performance.timeOrigin);

// Past this age a takeover marker is taken for one left by a process that died in the middle of a takeover.
const STALE_TAKEOVER_MS = 10_000;

function parseHolder(text: string | undefined): Holder | undefined {
  try {
    const holder = JSON.parse(text ?? "") as Partial<Holder>;
    return Number.isInteger(holder.pid) && typeof holder.startedAt === "number" ? (holder as Holder) : undefined;
  } catch {
    return undefined;
  }
}

/** Whether the lock's holder still runs: this very process (a second open of the folder in it), or another live pid. */
function isRunning(holder: Holder): boolean {
  if (holder.pid === process.pid) return holder.startedAt === processStartedAt();
  try {
    process.kill(holder.pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}

const readText = (file: string) =>
  readFile(file, "utf8").catch((error: NodeJS.ErrnoException) => (error.code === "ENOENT" ? undefined : Promise.reject(error)));

/** Creates `file` with `content` in one step (a hard link of a written file), so nobody ever reads a half-written lock. */
async function createWith(file: string, content: string): Promise<boolean> {
  const draft = `${file}.${process.pid}.${randomBytes(4).toString("hex")}`;
  await writeFile(draft, content, { mode: 0o644 });
  try {
    await link(draft, file);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "EEXIST") return false;
    throw error;
  } finally {
    await unlink(draft).catch(() => {});
  }
}

/**
 * Removes a lock whose holder is gone, if it is still the lock that was found stale: a marker directory
 * (mkdir is atomic) lets one process at a time look and remove, so two processes that both found the
 * same stale lock cannot each remove the other's new one.
 */
async function removeStale(file: string, staleText: string | undefined): Promise<void> {
  const marker = `${file}.takeover`;
  try {
    await mkdir(marker);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
    const age = Date.now() - (await stat(marker).catch(() => ({ mtimeMs: Date.now() }))).mtimeMs;
    if (age > STALE_TAKEOVER_MS) await rm(marker, { recursive: true, force: true });
    else await new Promise((resolve) => setTimeout(resolve, 50));
    return;
  }
  try {
    if ((await readText(file)) === staleText) await unlink(file).catch(() => {});
  } finally {
    await rm(marker, { recursive: true, force: true });
  }
}

/**
 * Embedded PGlite is one process: a second one on the same folder would write over the first's files
 * (acknowledged data lost). `<folder>.lock` names the process holding the folder; a lock left by a process
 * that no longer runs (killed, crashed) is taken over. A folder held by a live process is a StartupError.
 */
export async function lockDataDir(folder: string): Promise<DataDirLock> {
  const file = `${folder.replace(/\/$/, "")}.lock`;
  const own = JSON.stringify({ pid: process.pid, startedAt: processStartedAt() } satisfies Holder) + "\n";
  for (let attempt = 0; attempt < 50; attempt++) {
    if (await createWith(file, own)) {
      // Also on process.exit (a start-up that fails after opening the database): the next start need not take it over.
      const releaseOnExit = () => {
        try {
          if (readFileSync(file, "utf8") === own) unlinkSync(file);
        } catch {
          // already gone
        }
      };
      process.once("exit", releaseOnExit);
      return {
        path: file,
        async release() {
          process.off("exit", releaseOnExit);
          if ((await readText(file)) === own) await unlink(file).catch(() => {});
        },
      };
    }
    const text = await readText(file);
    const holder = parseHolder(text);
    if (holder && isRunning(holder)) {
      throw new StartupError(
        `The PGlite folder ${folder} (DATA_DIR) is in use by process ${holder.pid}${holder.pid === process.pid ? " (this one)" : ""}: ` +
          `embedded PGlite allows one server process; stop that one first, or use DATABASE_URL (PostgreSQL) to run several ` +
          `(lock file ${file}; delete it only if no such process runs)`,
      );
    }
    await removeStale(file, text);
  }
  throw new StartupError(`Could not take the lock file ${file} of the PGlite folder ${folder} (DATA_DIR): other processes keep taking it`);
}

/** A PGlite folder on disk, created if need be and locked to this process (no lock for `memory://`). */
export async function openPGliteFolder(dataDir: string): Promise<DataDirLock | undefined> {
  if (dataDir.startsWith("memory://")) return undefined;
  await makeDirectory(dataDir);
  return lockDataDir(dataDir);
}
