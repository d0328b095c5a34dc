import { text } from "node:stream/consumers";
import { parseArgs, type ParseArgsConfig } from "node:util";
import { loadConfig, loadEnvFile } from "./config.ts";

interface AdminRequest {
  method: "GET" | "POST" | "PUT" | "DELETE";
  path: string;
  body?: Record<string, unknown>;
}

type Options = Record<string, string | string[] | undefined>;

interface Command {
  usage: string;
  summary: string;
  /** Positional arguments after the command words: how many are required, how many more may follow. */
  arity: [required: number, optional: number];
  options?: ParseArgsConfig["options"];
  /** An admin API call (needs ADMIN_TOKEN and the server)… */
  request?(args: string[], options: Options): AdminRequest | Promise<AdminRequest>;
  /** …or work on the database itself (the server stopped); prints its result and returns the exit code. */
  run?(args: string[], options: Options): Promise<number>;
}

class UsageError extends Error {}

const segment = encodeURIComponent;

/** `-` reads the secret from stdin, so it stays out of shell history and `ps`. */
async function secretArgument(value: string): Promise<string> {
  if (value !== "-") return value;
  const secret = (await text(process.stdin)).trim();
  if (secret === "") throw new UsageError("no key on stdin");
  return secret;
}

const pageOptions = {
  take: { type: "string" },
  skip: { type: "string" },
  order: { type: "string" },
} satisfies ParseArgsConfig["options"];

/** A list command: GET `path` with the paging options (`--take 1..100`, `--skip`, `--order asc|desc`) as the query. */
function list(usage: string, summary: string, arity: number, path: (args: string[]) => string): Command {
  return {
    usage: `${usage} [--take n] [--skip n] [--order asc|desc]`,
    summary,
    arity: [arity, 0],
    options: pageOptions,
    request: (args, options) => {
      const query = new URLSearchParams(
        Object.entries(options).flatMap(([name, value]) => (typeof value === "string" ? [[name, value]] : [])),
      ).toString();
      return { method: "GET", path: path(args) + (query ? `?${query}` : "") };
    },
  };
}

/** A SECRETS_KEY-style value from the environment: base64 of 32 bytes. */
function secretsKeyFromEnv(name: string): Buffer {
  const value = process.env[name];
  if (!value) throw new UsageError(`${name} is not set (base64 of 32 bytes, like SECRETS_KEY)`);
  const key = Buffer.from(value, "base64");
  if (key.length !== 32) throw new UsageError(`${name}: must be 32 bytes, base64-encoded`);
  return key;
}

const commands: Record<string, Command> = {
  "secrets rotate": {
    usage: "secrets rotate",
    summary:
      "Re-encrypt every provider key and webhook secret from OLD_SECRETS_KEY to NEW_SECRETS_KEY, in the database of DATABASE_URL or DATA_DIR (servers stopped; safe to re-run)",
    arity: [0, 0],
    run: async () => {
      const [previous, next] = [secretsKeyFromEnv("OLD_SECRETS_KEY"), secretsKeyFromEnv("NEW_SECRETS_KEY")];
      const { database } = loadConfig({ ...process.env, SECRETS_KEY: next.toString("base64") });
      const { rotateSecrets } = await import("./modules/provider-keys/rotate-secrets.ts");
      const result = await rotateSecrets(database, previous, next);
      process.stdout.write(JSON.stringify({ data: result }, null, 2) + "\n");
      return 0;
    },
  },
  "org list": list("org list", "List organizations", 0, () => "/organizations"),
  "app list": list(
    "app list <organizationId>",
    "List an organization's applications",
    1,
    ([organizationId]) => `/organizations/${segment(organizationId!)}/applications`,
  ),
  "expert list": list(
    "expert list <organizationId>",
    "List an organization's experts, every version",
    1,
    ([organizationId]) => `/organizations/${segment(organizationId!)}/experts`,
  ),
  "key list": list(
    "key list <applicationId>",
    "List an application's API keys, revoked ones included (never their secrets)",
    1,
    ([applicationId]) => `/applications/${segment(applicationId!)}/api_keys`,
  ),
  "provider-key list": list(
    "provider-key list <applicationId>",
    "List an application's provider keys (provider and dates)",
    1,
    ([applicationId]) => `/applications/${segment(applicationId!)}/provider_keys`,
  ),
  "webhook list": list(
    "webhook list <applicationId>",
    "List an application's webhook endpoints (never their secrets)",
    1,
    ([applicationId]) => `/applications/${segment(applicationId!)}/webhook_endpoints`,
  ),
  "webhook deliveries": list(
    "webhook deliveries <webhookEndpointId>",
    "The delivery log of a webhook endpoint: each event's status and every attempt",
    1,
    ([webhookEndpointId]) => `/webhook_endpoints/${segment(webhookEndpointId!)}/deliveries`,
  ),
  "webhook create": {
    usage: "webhook create <applicationId> <url> [--event expert_job.<status>]...",
    summary: "Register a webhook endpoint (its signing secret is printed only this once; without --event: every event)",
    arity: [2, 0],
    options: { event: { type: "string", multiple: true } },
    request: ([applicationId, url], { event }) => ({
      method: "POST",
      path: `/applications/${segment(applicationId!)}/webhook_endpoints`,
      body: { url, ...(event !== undefined && { eventTypes: event }) },
    }),
  },
  "webhook delete": {
    usage: "webhook delete <webhookEndpointId>",
    summary: "Delete a webhook endpoint with its pending deliveries and log",
    arity: [1, 0],
    request: ([webhookEndpointId]) => ({ method: "DELETE", path: `/webhook_endpoints/${segment(webhookEndpointId!)}` }),
  },
  "webhook redeliver": {
    usage: "webhook redeliver <webhookDeliveryId>",
    summary: "Send an event again to its endpoint (same webhook-id and body)",
    arity: [1, 0],
    request: ([webhookDeliveryId]) => ({ method: "POST", path: `/webhook_deliveries/${segment(webhookDeliveryId!)}/redeliver` }),
  },
  "org create": {
    usage: "org create <name>",
    summary: "Create an organization",
    arity: [1, 0],
    request: ([name]) => ({ method: "POST", path: "/organizations", body: { name } }),
  },
  "app create": {
    usage: "app create <organizationId> <name>",
    summary: "Create an application in an organization",
    arity: [2, 0],
    request: ([organizationId, name]) => ({
      method: "POST",
      path: `/organizations/${segment(organizationId!)}/applications`,
      body: { name },
    }),
  },
  "key create": {
    usage: "key create <applicationId> <client|runtime> [name]",
    summary: "Create an API key (its value is printed only this once)",
    arity: [2, 1],
    request: ([applicationId, scope, name]) => ({
      method: "POST",
      path: `/applications/${segment(applicationId!)}/api_keys`,
      body: { scope, ...(name !== undefined && { name }) },
    }),
  },
  "key revoke": {
    usage: "key revoke <apiKeyId>",
    summary: "Revoke an API key at once",
    arity: [1, 0],
    request: ([apiKeyId]) => ({ method: "DELETE", path: `/api_keys/${segment(apiKeyId!)}` }),
  },
  "expert create": {
    usage: "expert create <organizationId> <name> <version> <description> [--tag t]...",
    summary: "Register an expert version (without --tag, the highest version takes `latest`)",
    arity: [4, 0],
    options: { tag: { type: "string", multiple: true } },
    request: ([organizationId, name, version, description], { tag }) => ({
      method: "POST",
      path: `/organizations/${segment(organizationId!)}/experts`,
      body: { name, version, description, ...(tag !== undefined && { tags: tag }) },
    }),
  },
  "job delete": {
    usage: "job delete <expertJobId>",
    summary: "Delete a job that is not running, with its checkpoints and messages (cancel a running one first)",
    arity: [1, 0],
    request: ([expertJobId]) => ({ method: "DELETE", path: `/expert_jobs/${segment(expertJobId!)}` }),
  },
  "provider-key set": {
    usage: "provider-key set <applicationId> <provider> <key|->",
    summary: "Store a provider API key (`-` reads it from stdin)",
    arity: [3, 0],
    request: async ([applicationId, provider, key]) => ({
      method: "PUT",
      path: `/applications/${segment(applicationId!)}/provider_keys/${segment(provider!)}`,
      body: { key: await secretArgument(key!) },
    }),
  },
  "provider-key delete": {
    usage: "provider-key delete <applicationId> <provider>",
    summary: "Delete a provider API key",
    arity: [2, 0],
    request: ([applicationId, provider]) => ({
      method: "DELETE",
      path: `/applications/${segment(applicationId!)}/provider_keys/${segment(provider!)}`,
    }),
  },
};

function helpText(): string {
  return [
    "Usage: npm run cli -- <command>",
    "",
    ...Object.keys(commands)
      .sort()
      .flatMap((name) => [`  ${commands[name]!.usage}`, `      ${commands[name]!.summary}`]),
    "  help",
    "      Show this text",
    "",
    "Environment: EXPERT_JOBS_URL (default http://127.0.0.1:3000), ADMIN_TOKEN (required but for secrets rotate); a .env in the",
    "working folder is read too (the environment wins).",
    "Prints the response body as JSON on stdout. An error response prints its envelope on stderr and exits 1;",
    "a usage error exits 2.",
  ].join("\n");
}

function parseCommand(argv: string[]): { command: Command; args: string[]; options: Options } {
  const name = argv.slice(0, 2).join(" ");
  const command = Object.hasOwn(commands, name) ? commands[name] : undefined;
  if (!command) throw new UsageError(`unknown command: ${argv.join(" ")}`);
  const { positionals, values } = parseArgs({ args: argv.slice(2), options: command.options ?? {}, allowPositionals: true, strict: true });
  const [required, optional] = command.arity;
  if (positionals.length < required || positionals.length > required + optional) {
    throw new UsageError(`usage: npm run cli -- ${command.usage}`);
  }
  return { command, args: positionals, options: values as Options };
}

async function send(baseUrl: string, token: string, request: AdminRequest): Promise<{ ok: boolean; text: string }> {
  const response = await fetch(`${baseUrl.replace(/\/+$/, "")}/api/admin/v1${request.path}`, {
    method: request.method,
    headers: {
      authorization: `Bearer ${token}`,
      ...(request.body !== undefined && { "content-type": "application/json" }),
    },
    ...(request.body !== undefined && { body: JSON.stringify(request.body) }),
    signal: AbortSignal.timeout(30_000),
  });
  return { ok: response.ok, text: await response.text() };
}

const pretty = (body: string): string => {
  try {
    return JSON.stringify(JSON.parse(body), null, 2);
  } catch {
    return body;
  }
};

async function main(argv: string[]): Promise<number> {
  if (argv.length === 0 || ["help", "--help", "-h"].includes(argv[0]!)) {
    process.stdout.write(helpText() + "\n");
    return 0;
  }
  try {
    const { command, args, options } = parseCommand(argv);
    if (command.run) return await command.run(args, options);
    const token = process.env.ADMIN_TOKEN;
    if (!token) throw new UsageError("ADMIN_TOKEN is not set");
    const request = await command.request!(args, options);
    const response = await send(process.env.EXPERT_JOBS_URL || "http://127.0.0.1:3000", token, request);
    // DELETE answers 204 with no body: success shows only in the exit code.
    if (response.text !== "") (response.ok ? process.stdout : process.stderr).write(pretty(response.text) + "\n");
    return response.ok ? 0 : 1;
  } catch (error) {
    if (error instanceof UsageError || (error as NodeJS.ErrnoException).code?.startsWith("ERR_PARSE_ARGS")) {
      process.stderr.write(`${(error as Error).message}\nRun \`npm run cli -- help\` for the list of commands.\n`);
      return 2;
    }
    const cause = (error as Error).cause as Error | undefined;
    const what = parseCommand(argv).command.run ? "failed" : "request failed";
    process.stderr.write(`${what}: ${(error as Error).message}${cause?.message ? ` (${cause.message})` : ""}\n`);
    return 1;
  }
}

// The same `.env` as the server's (ADMIN_TOKEN), the real environment winning.
loadEnvFile();
process.exitCode = await main(process.argv.slice(2));
