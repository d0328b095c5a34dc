import { randomBytes } from "node:crypto";
import { readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import closeWithGrace from "close-with-grace";
import type { FastifyInstance } from "fastify";
import { appLimits, buildApp } from "./app.ts";
import { ConfigError, loadConfig, loadEnvFile, type Config } from "./config.ts";
import { prepareDataDir } from "./startup/data-dir.ts";
import { checkListenable, describeListenError } from "./startup/listen.ts";
import { StartupError } from "./startup/startup-error.ts";

/** With PGlite and no SECRETS_KEY, the key lives beside the data it protects (created once, mode 600). */
async function resolveSecretsKey(config: Config): Promise<Buffer> {
  if (config.secretsKey) return config.secretsKey;
  const file = path.join(config.dataDir, "secrets.key");
  try {
    return Buffer.from((await readFile(file, "utf8")).trim(), "base64");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
  }
  const key = randomBytes(32);
  await writeFile(file, key.toString("base64") + "\n", { mode: 0o600, flag: "wx" });
  return key;
}

/** Printed once, by the start that serves an empty database: the only time these keys are shown. */
async function printFirstStartKeys(app: FastifyInstance): Promise<void> {
  const bootstrap = await app.admin.bootstrapIfEmpty();
  if (!bootstrap) return;
  process.stdout.write(
    JSON.stringify({
      message: "First start: created organization and application 'default'. Save these keys; they are not shown again.",
      organizationId: bootstrap.organization.id,
      applicationId: bootstrap.application.id,
      clientKey: bootstrap.clientKey.key,
      runtimeKey: bootstrap.runtimeKey.key,
    }) + "\n",
  );
}

async function listen(app: FastifyInstance, config: Config): Promise<void> {
  try {
    await app.listen({ port: config.port, host: config.host });
  } catch (error) {
    const line = describeListenError(error, config.host, config.port);
    throw line ? new StartupError(line, { cause: error }) : error;
  }
}

async function main(): Promise<void> {
  const started = performance.now();
  loadEnvFile();
  const config = loadConfig();
  await checkListenable(config.host, config.port);
  if (config.database.kind === "pglite" || !config.secretsKey) await prepareDataDir(config.dataDir);
  const app = await buildApp({ ...config, secretsKey: await resolveSecretsKey(config) }, appLimits(config));
  try {
    await app.ready();
    await listen(app, config);
    // After listening: a start that fails before serving creates no keys, so the next one prints them.
    await printFirstStartKeys(app);
    app.log.info(`Server ready in ${((performance.now() - started) / 1000).toFixed(1)} s`);
  } catch (error) {
    await app.close().catch(() => {});
    throw error;
  }
  closeWithGrace({ delay: 10_000 }, async ({ signal, err }) => {
    if (err) app.log.error({ err }, "shutting down after an error");
    else app.log.info({ signal }, "shutting down");
    await app.close();
  });
}

try {
  await main();
} catch (error) {
  if (error instanceof StartupError || error instanceof ConfigError) {
    console.error(error instanceof ConfigError ? `Invalid configuration: ${error.message}` : `Cannot start: ${error.message}`);
  } else {
    console.error("Cannot start:", error);
  }
  process.exit(1);
}
