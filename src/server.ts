import { randomBytes } from "node:crypto";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import closeWithGrace from "close-with-grace";
import { appLimits, buildApp } from "./app.ts";
import { ConfigError, loadConfig, type Config } from "./config.ts";
import { StartupError } from "./errors.ts";

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
  await mkdir(config.dataDir, { recursive: true });
  await writeFile(file, key.toString("base64") + "\n", { mode: 0o600, flag: "wx" });
  return key;
}

/** A state the server must not start in ends the process with its one line on stderr, not a stack trace. */
async function startOrExit<T>(start: () => Promise<T>): Promise<T> {
  try {
    return await start();
  } catch (error) {
    if (!(error instanceof StartupError)) throw error;
    console.error(error.message);
    process.exit(1);
  }
}

async function main() {
  let config: Config;
  try {
    config = loadConfig();
  } catch (error) {
    if (error instanceof ConfigError) {
      console.error(`Invalid configuration: ${error.message}`);
      process.exit(1);
    }
    throw error;
  }
  const app = await startOrExit(async () => buildApp({ ...config, secretsKey: await resolveSecretsKey(config) }, appLimits(config)));

  closeWithGrace({ delay: 10_000 }, async ({ signal, err }) => {
    if (err) app.log.error({ err }, "shutting down after an error");
    else app.log.info({ signal }, "shutting down");
    await app.close();
  });

  await app.ready();
  const bootstrap = await app.admin.bootstrapIfEmpty();
  if (bootstrap) {
    // Printed once, on the first start of an empty database: the only time these keys are shown.
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
  await app.listen({ port: config.port, host: config.host });
}

await main();
