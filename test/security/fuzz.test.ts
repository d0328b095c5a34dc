import { STATUS_CODES } from "node:http";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { InjectOptions, LightMyRequestResponse } from "fastify";
import { startTestApp, ADMIN_TOKEN, type TestApp } from "../helpers/app.ts";
import { api, checkpointBody, jobInStatus, seedSiblingApplication, seedTenant, type Tenant } from "../helpers/fixtures.ts";
import { databaseDigest } from "../helpers/database-digest.ts";

/**
 * Property-based fuzzing of every endpoint through app.inject: hostile paths, queries, headers and
 * JSON or multipart bodies. Every answer must be a status the endpoint documents (its OpenAPI
 * responses, plus the wire-level 400/404/413/415 every endpoint can give), in the `{code, error, reason}`
 * envelope when it is an error, never a 5xx; a rejected request must leave the database as it was,
 * and nothing may reach Object.prototype.
 *
 * 3,500 requests per suite run, and 3,400 more that put one hostile value (a lone surrogate, U+0000, thousands
 * of levels of nesting, a number past a double, prototype keys, a wrong type) in any field of every write
 * endpoint. CI runs the suite three times (PGlite, PostgreSQL, PostgreSQL on Node 24); its PostgreSQL run
 * sets FUZZ_REQUESTS=5500 FUZZ_CLASS_REQUESTS=5500, so that run alone sends over 10,000. FUZZ_REQUESTS=50000 FUZZ_CLASS_REQUESTS=50000 npm test -- test/security/fuzz.test.ts digs deeper.
 */

const TOTAL_REQUESTS = Number(process.env.FUZZ_REQUESTS ?? 3_500);
const CLASS_REQUESTS = Number(process.env.FUZZ_CLASS_REQUESTS ?? 3_400);
const BODY_LIMIT = 64 * 1024;
const PROVIDER_SECRETS = ["sk-anthropic-secret", "sk-openai-secret"];
const WIRE_STATUSES = [400, 404, 413, 415];

type ParamKind =
  | "jobId"
  | "stoppedJobId"
  | "checkpointId"
  | "organizationId"
  | "applicationId"
  | "apiKeyId"
  | "webhookEndpointId"
  | "webhookDeliveryId"
  | "provider";
type BodyKind = "none" | "json" | "form";

interface Endpoint {
  method: string;
  /** The OpenAPI path (`{name}` parameters); undefined for routes the document hides. */
  documented?: string;
  path: string;
  params: Partial<Record<string, ParamKind>>;
  body: BodyKind;
  /** A valid body to mutate. */
  seed?: () => Record<string, unknown>;
  admin?: boolean;
  /** Statuses of routes the OpenAPI document hides. */
  statuses?: number[];
  /** An event stream that never ends by itself: a 200 is judged by its headers, then dropped. */
  endless?: boolean;
  weight: number;
}

interface Pools {
  jobIds: string[];
  stoppedJobIds: string[];
  checkpointIds: string[];
  organizationIds: string[];
  applicationIds: string[];
  apiKeyIds: string[];
  keys: string[];
}

const UNKNOWN_ID = "zzzzzzzzzzzzzzzzzzzzzzzz";

const hostileStrings = fc.oneof(
  fc.constantFrom(
    "",
    " ",
    "null",
    "undefined",
    "NaN",
    "-1",
    "0",
    "1e309",
    "-0",
    "0x10",
    "9".repeat(400),
    "__proto__",
    "constructor",
    "prototype",
    "hasOwnProperty",
    "toString",
    "../../etc/passwd",
    "%00",
    "%2e%2e%2f",
    "\u0000",
    "a\u0000b",
    "\ud800",
    "\udfff\ud800",
    "\uffff",
    "\u202e",
    "😀".repeat(40),
    "<script>alert(1)</script>",
    "' OR 1=1 --",
    "'; DROP TABLE expert_job; --",
    "${jndi:ldap://x/a}",
    "{{7*7}}",
    "a".repeat(24),
    "A".repeat(24),
    "0".repeat(24),
    UNKNOWN_ID,
    "\r\nX-Injected: 1",
    "x".repeat(70 * 1024),
  ),
  fc.string({ unit: "binary", maxLength: 40 }),
  fc.string({ unit: "grapheme", maxLength: 40 }),
  fc.string({ maxLength: 300 }),
);

const hostileKeys = fc.oneof(
  fc.constantFrom("__proto__", "constructor", "prototype", "hasOwnProperty", "toString", "valueOf", "__defineGetter__", "", "$where", "0"),
  fc.string({ maxLength: 12 }),
);

const hostileValue: fc.Arbitrary<unknown> = fc.letrec<{ value: unknown }>((tie) => ({
  value: fc.oneof(
    { maxDepth: 3, depthSize: "small" },
    hostileStrings,
    fc.integer(),
    fc.double(),
    fc.boolean(),
    fc.constant(null),
    fc.constantFrom(2 ** 31, 2 ** 53 + 1, -(2 ** 63), 1e308, Number.MIN_VALUE),
    fc.array(tie("value"), { maxLength: 4 }),
    fc.dictionary(hostileKeys, tie("value"), { maxKeys: 4 }),
  ),
})).value;

/** JSON texts no serializer would produce: prototype keys, deep nesting, malformed syntax. */
const rawJsonTexts = fc.oneof(
  fc.constantFrom(
    '{"__proto__":{"polluted":"yes"}}',
    '{"constructor":{"prototype":{"polluted":"yes"}}}',
    '{"a":1,"__proto__":{"isAdmin":true},"query":"x"}',
    '{"query":"x",}',
    "{'query':'x'}",
    '{"query":NaN}',
    '{"query":"x"',
    "[",
    "]",
    "null",
    "true",
    "0",
    '"string"',
    "[]",
    "\ufeff{}",
    "{}garbage",
    '{"a":"\\ud800"}',
    '{"a":"\\u0000"}',
    '{"waitMs":1e999}',
  ),
  fc.integer({ min: 1, max: 5_000 }).map((depth) => "[".repeat(depth) + "]".repeat(depth)),
  fc.integer({ min: 1, max: 3_000 }).map((depth) => '{"a":'.repeat(depth) + "1" + "}".repeat(depth)),
  fc.string({ unit: "binary", maxLength: 200 }),
  fc.uint8Array({ maxLength: 200 }).map((bytes) => Buffer.from(bytes).toString("latin1")),
);

type Mutation = { op: "replace" | "delete" | "add" | "keep"; at: number; key: string; value: unknown };

const mutation: fc.Arbitrary<Mutation> = fc.record({
  op: fc.constantFrom("replace", "delete", "add", "keep"),
  at: fc.nat(),
  key: hostileKeys,
  value: hostileValue,
});

/** Applies one mutation to a copy of a valid body at one of its nested objects or arrays. */
function mutate(body: Record<string, unknown>, { op, at, key, value }: Mutation): unknown {
  const copy = structuredClone(body);
  if (op === "keep") return copy;
  const slots: Array<{ parent: Record<string, unknown> | unknown[]; key: string | number }> = [];
  const walk = (node: unknown, depth: number) => {
    if (depth > 5 || node === null || typeof node !== "object") return;
    for (const [childKey, child] of Object.entries(node)) {
      slots.push({ parent: node as Record<string, unknown>, key: Array.isArray(node) ? Number(childKey) : childKey });
      walk(child, depth + 1);
    }
  };
  walk(copy, 0);
  if (slots.length === 0) return copy;
  const slot = slots[at % slots.length]!;
  const parent = slot.parent as Record<string | number, unknown>;
  if (op === "replace") parent[slot.key] = value;
  else if (op === "delete") delete parent[slot.key];
  else Object.defineProperty(copy, key, { value, enumerable: true, configurable: true, writable: true });
  return copy;
}

/** multipart/form-data by hand, so field names and values can be anything (quotes, CRLF, NUL). */
function multipartBody(fields: Array<[string, string]>, options: { file?: boolean; broken?: boolean }) {
  const boundary = "----fuzz" + Math.abs(fields.length * 7919).toString(36) + "b0undary";
  const parts = fields.map(
    ([name, value], index) =>
      `--${boundary}\r\nContent-Disposition: form-data; name="${name}"${options.file && index === 0 ? '; filename="f.txt"\r\nContent-Type: text/plain' : ""}\r\n\r\n${value}\r\n`,
  );
  const text = parts.join("") + (options.broken ? `--${boundary}` : `--${boundary}--\r\n`);
  return { payload: Buffer.from(text, "utf8"), contentType: `multipart/form-data; boundary=${boundary}` };
}

function flattenFields(body: unknown): Array<[string, string]> {
  if (body === null || typeof body !== "object" || Array.isArray(body)) return [["value", String(body)]];
  return Object.entries(body).flatMap(([name, value]): Array<[string, string]> =>
    Array.isArray(value)
      ? value.map((item) => [name, typeof item === "string" ? item : (JSON.stringify(item) ?? "")])
      : [[name, typeof value === "string" ? value : (JSON.stringify(value) ?? "")]],
  );
}

const headerSafe = (value: string) => value.replace(/[^\x20-\x7e]/g, "").slice(0, 300);

/** Percent-encodes UTF-8 bytes (a lone surrogate becomes U+FFFD, as a browser would send it). */
const pct = (value: string) =>
  [...Buffer.from(value, "utf8")]
    .map((byte) =>
      /[A-Za-z0-9._~-]/.test(String.fromCharCode(byte))
        ? String.fromCharCode(byte)
        : `%${byte.toString(16).toUpperCase().padStart(2, "0")}`,
    )
    .join("");

/** Printable ASCII goes into the URL as is half the time (`%00`, `../`, `?`, `#` then mean what they say). */
const urlPart = (value: string, raw: boolean) => (raw && /^[\x21-\x7e]*$/.test(value) ? value : pct(value));

/** Where a hostile value goes in a valid body: an existing value replaced, or a key added to an object. */
interface Placement {
  at: number;
  add: boolean;
  key: string;
  /** Within the body's free-form JSON (a checkpoint's messages, tool arguments and results), where anything goes. */
  freeForm: boolean;
}

/** A hostile value: a JS value, or raw JSON text JSON.stringify cannot write (numbers past a double, thousands of levels). */
interface HostileValue {
  kind: string;
  value?: unknown;
  raw?: string;
}

const HOSTILE_TOKEN = "__fuzz_hostile_value__";

const withLoneSurrogate = fc
  .tuple(
    fc.string({ maxLength: 20 }),
    fc.constantFrom("\ud83d", "\udc00", "\udfff\ud800", "\ud800\ud800", "😀".slice(0, 1)),
    fc.string({ maxLength: 20 }),
  )
  .map(([head, lone, tail]) => head + lone + tail);
const withNul = fc.tuple(fc.string({ maxLength: 20 }), fc.string({ maxLength: 20 })).map(([head, tail]) => `${head}\u0000${tail}`);
const nestingText = fc
  .record({ depth: fc.oneof(fc.integer({ min: 2, max: 140 }), fc.integer({ min: 140, max: 6_000 })), object: fc.boolean() })
  .map(({ depth, object }) => (object ? '{"a":'.repeat(depth) + "1" + "}".repeat(depth) : "[".repeat(depth) + "]".repeat(depth)));

const hostileClassValue: fc.Arbitrary<HostileValue> = fc.oneof(
  withLoneSurrogate.map((value) => ({ kind: "lone surrogate", value })),
  withNul.map((value) => ({ kind: "U+0000", value })),
  fc.constantFrom({ a: "\ud83d", "\udc00": ["\u0000"] }, ["\ud83d", "\u0000"]).map((value) => ({ kind: "lone surrogate", value })),
  nestingText.map((raw) => ({ kind: "deep nesting", raw })),
  fc
    .constantFrom("1e400", "-1e400", "1e309", "1" + "0".repeat(400), "1e-400", "-0", "4.9e-324", "123456789012345678901234567890")
    .map((raw) => ({ kind: "huge number", raw })),
  fc
    .constantFrom('{"__proto__":{"polluted":"yes"}}', '{"constructor":{"prototype":{"polluted":"yes"}}}', '{"__proto__":[],"toString":1}')
    .map((raw) => ({ kind: "prototype keys", raw })),
  fc
    .constantFrom<unknown>(42, "42", null, ["x"], ["processing"], true, {}, "0x1", " 0.5", "", 1.5, -1, "true", [])
    .map((value) => ({ kind: "wrong type", value })),
);

const placementArb: fc.Arbitrary<Placement> = fc.record({
  at: fc.nat(),
  add: fc.boolean(),
  key: fc.constantFrom("__proto__", "constructor", "extra", "prototype"),
  freeForm: fc.boolean(),
});

/** The free-form parts of a checkpoint post: JSON the runtime decides, stored and answered exactly. */
const FREE_FORM = [
  ["checkpoint", "messages"],
  ["step", "newMessages"],
  ["step", "inputMessages"],
  ["step", "toolCall", "args"],
  ["step", "toolResult", "result"],
];

/** The body as JSON text with the hostile value at one of its nested places (any depth, any field). */
function placeHostile(body: Record<string, unknown>, placement: Placement, hostile: HostileValue): string {
  const slots: Array<{ parent: Record<string | number, unknown>; key: string | number; isObject: boolean }> = [];
  const walk = (node: unknown, depth: number) => {
    if (depth > 8 || node === null || typeof node !== "object") return;
    for (const [childKey, child] of Object.entries(node)) {
      slots.push({
        parent: node as Record<string, unknown>,
        key: Array.isArray(node) ? Number(childKey) : childKey,
        isObject: child !== null && typeof child === "object" && !Array.isArray(child),
      });
      walk(child, depth + 1);
    }
  };
  const roots = FREE_FORM.map((keys) => keys.reduce<unknown>((node, key) => (node as Record<string, unknown> | undefined)?.[key], body));
  if (placement.freeForm && roots.some((root) => root !== undefined)) for (const root of roots) walk(root, 1);
  else walk(body, 0);
  const value = hostile.raw === undefined ? hostile.value : HOSTILE_TOKEN;
  const slot = slots[placement.at % Math.max(1, slots.length)];
  const define = (target: object) =>
    Object.defineProperty(target, placement.key, { value, enumerable: true, configurable: true, writable: true });
  // A body with no fields (cancel's) gets the value as a field of its own.
  if (!slot) define(body);
  else if (placement.add && slot.isObject) define(slot.parent[slot.key] as object);
  else slot.parent[slot.key] = value;
  const text = JSON.stringify(body);
  return hostile.raw === undefined ? text : text.replace(`"${HOSTILE_TOKEN}"`, hostile.raw);
}

describe("fuzzing every endpoint (fast-check, app.inject)", () => {
  let t: TestApp;
  let tenant: Tenant;
  let stranger: Tenant;
  let sibling: Tenant;
  let pools: Pools;
  let endpoints: Endpoint[];
  let documented: Map<string, number[]>;
  let prototypeKeys: string[];
  let sent = 0;
  const statusCounts = new Map<number, number>();

  const fingerprint = async (): Promise<string> => {
    const tables = [
      "organization",
      "application",
      "api_key",
      "expert",
      "provider_key",
      "expert_job",
      "checkpoint",
      "job_message",
      "idempotency_key",
      "webhook_endpoint",
    ];
    // Any insert or update gives a row a new xmin, any delete lowers the count: together they see every change.
    // Jobs are compared by content without their watch mark, which open streams renew in the background
    // (src/modules/expert-jobs/watch-marks.ts), whatever request is in flight.
    const sql = `SELECT concat_ws(',', ${tables
      .map((table) =>
        table === "expert_job"
          ? `(SELECT count(*) || ':' || coalesce(md5(string_agg((to_jsonb(job) - 'watched_until')::text, ',' ORDER BY id)), '') FROM expert_job job)`
          : `(SELECT count(*) || ':' || coalesce(max(xmin::text::bigint), 0) FROM ${table})`,
      )
      .join(", ")}) AS fingerprint`;
    // Straight to the driver: this runs after every request, and Prisma's query path would double the cost.
    const database = t.app.database;
    const rows =
      database.kind === "pglite"
        ? (await database.lite.query<{ fingerprint: string }>(sql)).rows
        : (await database.pool.query<{ fingerprint: string }>(sql)).rows;
    return rows[0]!.fingerprint;
  };

  beforeAll(async () => {
    prototypeKeys = Object.getOwnPropertyNames(Object.prototype).sort();
    t = await startTestApp({
      rateLimit: false,
      authFailureLimit: false,
      underPressure: false,
      config: { bodyLimitBytes: BODY_LIMIT },
      captureLogs: "error",
    });
    tenant = await seedTenant(t.app, { providers: ["anthropic", "openai"] });
    stranger = await seedTenant(t.app);
    sibling = await seedSiblingApplication(t.app, tenant);
    await t.app.providerKeys.put(tenant.applicationId, "openai", PROVIDER_SECRETS[1]!);

    const running = await Promise.all(
      ["queued", "processing", "completed", "requestInteractiveToolResult"].map((s) => jobInStatus(t.app, tenant, s)),
    );
    const stopped = await Promise.all(["canceled", "expired"].map((s) => jobInStatus(t.app, tenant, s)));
    // Canceled, not completed: a stranger's key may send continue, and a stream of a job that runs again never ends.
    const theirs = await jobInStatus(t.app, stranger, "canceled");
    const spare = await Promise.all([1, 2, 3].map(() => t.app.admin.createApiKey(tenant.applicationId, "client")));
    const revoked = await t.app.admin.createApiKey(tenant.applicationId, "client");
    await t.app.admin.revokeApiKey(revoked.id);

    pools = {
      jobIds: [...running, ...stopped, theirs].map(({ job }) => job.id),
      // A stream of a job that can still run would never end under inject: only jobs no request can revive.
      stoppedJobIds: [...stopped, theirs].map(({ job }) => job.id),
      checkpointIds: [...running, ...stopped, theirs].flatMap(({ checkpoints }) => checkpoints.map((checkpoint) => checkpoint.id)),
      organizationIds: [tenant.organizationId, stranger.organizationId],
      applicationIds: [tenant.applicationId, stranger.applicationId, sibling.applicationId],
      apiKeyIds: [...spare.map((key) => key.id), revoked.id],
      keys: [tenant.clientKey, tenant.runtimeKey, stranger.clientKey, stranger.runtimeKey, sibling.runtimeKey, revoked.key],
    };

    const studio = "/api/studio/v1/expert_jobs";
    const admin = "/api/admin/v1";
    const continueSeed = () => ({ query: "Go on", files: ["a.txt"], temperature: 0.5, maxSteps: 10, maxRetries: 1, model: "gpt-5" });
    endpoints = [
      {
        method: "POST",
        documented: studio,
        path: studio,
        params: {},
        body: "form",
        seed: () => ({ expertKey: tenant.expert.key, query: "Do it" }),
        weight: 3,
      },
      { method: "GET", documented: studio, path: studio, params: {}, body: "none", weight: 2 },
      {
        method: "GET",
        documented: `${studio}/{expertJobId}`,
        path: `${studio}/{expertJobId}`,
        params: { expertJobId: "jobId" },
        body: "none",
        weight: 2,
      },
      {
        method: "POST",
        documented: `${studio}/{expertJobId}`,
        path: `${studio}/{expertJobId}`,
        params: { expertJobId: "jobId" },
        body: "json",
        seed: () => ({ status: "processing" }),
        weight: 2,
      },
      {
        method: "POST",
        documented: `${studio}/{expertJobId}/continue`,
        path: `${studio}/{expertJobId}/continue`,
        params: { expertJobId: "jobId" },
        body: "form",
        seed: continueSeed,
        weight: 3,
      },
      {
        method: "POST",
        documented: `${studio}/{expertJobId}/resume_from`,
        path: `${studio}/{expertJobId}/resume_from`,
        params: { expertJobId: "jobId" },
        body: "form",
        seed: () => ({ checkpointId: pools.checkpointIds[0]!, ...continueSeed() }),
        weight: 3,
      },
      {
        method: "POST",
        documented: `${studio}/{expertJobId}/cancel`,
        path: `${studio}/{expertJobId}/cancel`,
        params: { expertJobId: "jobId" },
        body: "json",
        seed: () => ({}),
        weight: 1,
      },
      {
        method: "POST",
        documented: `${studio}/claim`,
        path: `${studio}/claim`,
        params: {},
        body: "json",
        // Valid waits stay tiny: a real long poll would hold the run for seconds.
        seed: () => ({ waitMs: 0 }),
        weight: 2,
      },
      {
        method: "GET",
        documented: `${studio}/{expertJobId}/checkpoints/{checkpointId}`,
        path: `${studio}/{expertJobId}/checkpoints/{checkpointId}`,
        params: { expertJobId: "jobId", checkpointId: "checkpointId" },
        body: "none",
        weight: 2,
      },
      {
        method: "GET",
        documented: `${studio}/{expertJobId}/checkpoints`,
        path: `${studio}/{expertJobId}/checkpoints`,
        params: { expertJobId: "jobId" },
        body: "none",
        weight: 2,
      },
      {
        method: "POST",
        documented: `${studio}/{expertJobId}/checkpoints`,
        path: `${studio}/{expertJobId}/checkpoints`,
        params: { expertJobId: "jobId" },
        body: "json",
        seed: () => {
          const toolCall = {
            id: "call_7",
            skillName: "search",
            toolName: "webSearch",
            args: { q: "x", options: { depth: 2, tags: ["a"] } },
          };
          return checkpointBody(tenant, {
            stepNumber: 7,
            toolCall,
            toolResult: { id: toolCall.id, skillName: "search", toolName: "webSearch", result: [{ type: "textPart", text: "found" }] },
            inputMessages: [{ type: "userMessage", contents: [{ type: "textPart", text: "Do it" }] }],
          }) as unknown as Record<string, unknown>;
        },
        weight: 4,
      },
      {
        method: "GET",
        documented: `${studio}/{expertJobId}/checkpoints/stream`,
        path: `${studio}/{expertJobId}/checkpoints/stream`,
        params: { expertJobId: "stoppedJobId" },
        body: "none",
        weight: 2,
      },
      // Every change of the application's jobs: a 200 never ends by itself.
      { method: "GET", documented: `${studio}/stream`, path: `${studio}/stream`, params: {}, body: "none", endless: true, weight: 2 },
      {
        method: "GET",
        documented: `${studio}/{expertJobId}/status`,
        path: `${studio}/{expertJobId}/status`,
        // A stopped job: a valid `while` with a long `waitMs` would otherwise hold the request for 30 s.
        params: { expertJobId: "stoppedJobId" },
        body: "none",
        weight: 2,
      },
      {
        method: "POST",
        documented: `${admin}/applications/{applicationId}/webhook_endpoints`,
        path: `${admin}/applications/{applicationId}/webhook_endpoints`,
        params: { applicationId: "applicationId" },
        body: "json",
        // A loopback receiver is refused by default (WEBHOOK_ALLOW_PRIVATE), without a DNS lookup.
        seed: () => ({ url: "http://127.0.0.1:9/hook", eventTypes: ["expert_job.completed"] }),
        admin: true,
        weight: 1,
      },
      {
        method: "GET",
        documented: `${admin}/applications/{applicationId}/webhook_endpoints`,
        path: `${admin}/applications/{applicationId}/webhook_endpoints`,
        params: { applicationId: "applicationId" },
        body: "none",
        admin: true,
        weight: 1,
      },
      {
        method: "DELETE",
        documented: `${admin}/webhook_endpoints/{webhookEndpointId}`,
        path: `${admin}/webhook_endpoints/{webhookEndpointId}`,
        params: { webhookEndpointId: "webhookEndpointId" },
        body: "none",
        admin: true,
        weight: 1,
      },
      {
        method: "GET",
        documented: `${admin}/webhook_endpoints/{webhookEndpointId}/deliveries`,
        path: `${admin}/webhook_endpoints/{webhookEndpointId}/deliveries`,
        params: { webhookEndpointId: "webhookEndpointId" },
        body: "none",
        admin: true,
        weight: 1,
      },
      {
        method: "POST",
        documented: `${admin}/webhook_deliveries/{webhookDeliveryId}/redeliver`,
        path: `${admin}/webhook_deliveries/{webhookDeliveryId}/redeliver`,
        params: { webhookDeliveryId: "webhookDeliveryId" },
        body: "none",
        admin: true,
        weight: 1,
      },
      {
        method: "POST",
        documented: `${admin}/organizations`,
        path: `${admin}/organizations`,
        params: {},
        body: "json",
        seed: () => ({ name: "fuzz-org" }),
        admin: true,
        weight: 1,
      },
      {
        method: "POST",
        documented: `${admin}/organizations/{organizationId}/applications`,
        path: `${admin}/organizations/{organizationId}/applications`,
        params: { organizationId: "organizationId" },
        body: "json",
        seed: () => ({ name: "fuzz-app" }),
        admin: true,
        weight: 1,
      },
      {
        method: "POST",
        documented: `${admin}/applications/{applicationId}/api_keys`,
        path: `${admin}/applications/{applicationId}/api_keys`,
        params: { applicationId: "applicationId" },
        body: "json",
        seed: () => ({ scope: "runtime", name: "fuzz" }),
        admin: true,
        weight: 1,
      },
      {
        method: "DELETE",
        documented: `${admin}/api_keys/{apiKeyId}`,
        path: `${admin}/api_keys/{apiKeyId}`,
        params: { apiKeyId: "apiKeyId" },
        body: "none",
        admin: true,
        weight: 1,
      },
      {
        method: "POST",
        documented: `${admin}/organizations/{organizationId}/experts`,
        path: `${admin}/organizations/{organizationId}/experts`,
        params: { organizationId: "organizationId" },
        body: "json",
        seed: () => ({ name: "@acme/fuzzed", version: "1.0.0", description: "Fuzzed", tags: ["beta"] }),
        admin: true,
        weight: 1,
      },
      {
        method: "PUT",
        documented: `${admin}/applications/{applicationId}/provider_keys/{provider}`,
        path: `${admin}/applications/{applicationId}/provider_keys/{provider}`,
        params: { applicationId: "applicationId", provider: "provider" },
        body: "json",
        seed: () => ({ key: "sk-fuzzed" }),
        admin: true,
        weight: 1,
      },
      {
        method: "DELETE",
        documented: `${admin}/applications/{applicationId}/provider_keys/{provider}`,
        path: `${admin}/applications/{applicationId}/provider_keys/{provider}`,
        params: { applicationId: "applicationId", provider: "provider" },
        body: "none",
        admin: true,
        weight: 1,
      },
      {
        method: "GET",
        documented: `${admin}/organizations`,
        path: `${admin}/organizations`,
        params: {},
        body: "none",
        admin: true,
        weight: 1,
      },
      {
        method: "GET",
        documented: `${admin}/organizations/{organizationId}/applications`,
        path: `${admin}/organizations/{organizationId}/applications`,
        params: { organizationId: "organizationId" },
        body: "none",
        admin: true,
        weight: 1,
      },
      {
        method: "GET",
        documented: `${admin}/organizations/{organizationId}/experts`,
        path: `${admin}/organizations/{organizationId}/experts`,
        params: { organizationId: "organizationId" },
        body: "none",
        admin: true,
        weight: 1,
      },
      {
        method: "GET",
        documented: `${admin}/applications/{applicationId}/api_keys`,
        path: `${admin}/applications/{applicationId}/api_keys`,
        params: { applicationId: "applicationId" },
        body: "none",
        admin: true,
        weight: 1,
      },
      {
        method: "GET",
        documented: `${admin}/applications/{applicationId}/provider_keys`,
        path: `${admin}/applications/{applicationId}/provider_keys`,
        params: { applicationId: "applicationId" },
        body: "none",
        admin: true,
        weight: 1,
      },
      {
        method: "DELETE",
        documented: `${admin}/expert_jobs/{expertJobId}`,
        path: `${admin}/expert_jobs/{expertJobId}`,
        params: { expertJobId: "jobId" },
        body: "none",
        admin: true,
        weight: 1,
      },
      { method: "GET", documented: "/healthz", path: "/healthz", params: {}, body: "none", weight: 1 },
      { method: "GET", documented: "/readyz", path: "/readyz", params: {}, body: "none", weight: 1 },
      { method: "GET", documented: "/metrics", path: "/metrics", params: {}, body: "none", weight: 1 },
      { method: "GET", path: "/openapi.json", params: {}, body: "none", statuses: [200], weight: 1 },
      { method: "GET", path: "/docs", params: {}, body: "none", statuses: [200, 301, 302], weight: 1 },
      // `If-None-Match: *` makes any static file a 304.
      { method: "GET", path: "/dashboard", params: {}, body: "none", statuses: [200, 301, 304], weight: 1 },
      { method: "GET", path: "/dashboard/dashboard.js", params: {}, body: "none", statuses: [200, 304], weight: 1 },
    ];

    const document = t.app.swagger() as unknown as { paths: Record<string, Record<string, { responses: Record<string, unknown> }>> };
    documented = new Map();
    for (const [path, operations] of Object.entries(document.paths)) {
      for (const [method, operation] of Object.entries(operations)) {
        documented.set(`${method.toUpperCase()} ${path.replace(/\/$/, "")}`, Object.keys(operation.responses).map(Number));
      }
    }
  }, 120_000);

  afterAll(async () => {
    await t?.close();
    console.info(
      `fuzz: ${sent} requests; statuses ${[...statusCounts.entries()]
        .sort(([a], [b]) => a - b)
        .map(([status, count]) => `${status}×${count}`)
        .join(" ")}`,
    );
  });

  it("covers every operation of the OpenAPI document", () => {
    const covered = new Set(
      endpoints.filter((endpoint) => endpoint.documented).map((endpoint) => `${endpoint.method} ${endpoint.documented}`),
    );
    expect([...documented.keys()].filter((operation) => !covered.has(operation))).toEqual([]);
  });

  const poolFor = (kind: ParamKind): string[] =>
    ({
      jobId: pools.jobIds,
      stoppedJobId: pools.stoppedJobIds,
      checkpointId: pools.checkpointIds,
      organizationId: pools.organizationIds,
      applicationId: pools.applicationIds,
      apiKeyId: pools.apiKeyIds,
      webhookEndpointId: [],
      webhookDeliveryId: [],
      provider: ["anthropic", "openai"],
    })[kind];

  const idFor = (kind: ParamKind): fc.Arbitrary<string> => {
    const known: Record<Exclude<ParamKind, "provider">, () => string[]> = {
      jobId: () => pools.jobIds,
      stoppedJobId: () => pools.stoppedJobIds,
      checkpointId: () => pools.checkpointIds,
      organizationId: () => pools.organizationIds,
      applicationId: () => pools.applicationIds,
      apiKeyId: () => pools.apiKeyIds,
      // None exist: the fuzz sees their 404s and 422s (a valid endpoint needs a receiver that resolves).
      webhookEndpointId: () => [],
      webhookDeliveryId: () => [],
    };
    const valid =
      kind === "provider" ? fc.constantFrom("anthropic", "google", "openai", "deepseek") : fc.constantFrom(...known[kind](), UNKNOWN_ID);
    const invalid = fc.oneof(
      hostileStrings.filter((value) => value.length < 2_000),
      fc.constantFrom("ANTHROPIC", "x".repeat(25), "x".repeat(23), "..", "."),
    );
    return fc.oneof({ arbitrary: valid, weight: 4 }, { arbitrary: invalid, weight: 1 });
  };

  const queryArb = fc.array(
    fc.tuple(
      fc.oneof(
        fc.constantFrom(
          "take",
          "skip",
          "sort",
          "order",
          "filter",
          "status",
          "exclude",
          "after",
          "access_token",
          "__proto__",
          "constructor",
        ),
        fc.constantFrom("__proto__[polluted]", "constructor[prototype][polluted]", "take[]", "a.b"),
        hostileKeys,
      ),
      fc.oneof(
        fc.constantFrom("1", "100", "101", "0", "-1", "1.5", "1e3", "createdAt", "updatedAt", "asc", "desc", "messages", "queued", "true"),
        hostileStrings.filter((value) => value.length < 2_000),
      ),
    ),
    { maxLength: 5 },
  );

  const authArb = (admin: boolean) =>
    fc.oneof(
      { arbitrary: fc.constantFrom(...(admin ? [ADMIN_TOKEN] : [tenant.clientKey, tenant.runtimeKey, tenant.runtimeKey])), weight: 16 },
      { arbitrary: fc.constantFrom(...pools.keys, ADMIN_TOKEN), weight: 3 },
      { arbitrary: hostileStrings.map((value) => headerSafe(value)), weight: 1 },
      { arbitrary: fc.constant(undefined), weight: 1 },
    );

  const extraHeaders = fc.dictionary(
    fc.constantFrom("last-event-id", "x-request-id", "accept", "accept-encoding", "if-none-match", "range", "x-forwarded-for", "origin"),
    hostileStrings.map(headerSafe),
    { maxKeys: 3 },
  );

  const requestFor = (endpoint: Endpoint): fc.Arbitrary<InjectOptions & { rerouted: boolean }> => {
    const paramNames = Object.keys(endpoint.params);
    const params = fc.tuple(...paramNames.map((name) => idFor(endpoint.params[name]!)));
    const bodyArb: fc.Arbitrary<{ payload?: string | Buffer; contentType?: string }> =
      endpoint.body === "none"
        ? fc.oneof(
            { arbitrary: fc.constant({}), weight: 4 },
            { arbitrary: rawJsonTexts.map((payload) => ({ payload, contentType: "application/json" })), weight: 1 },
          )
        : fc.oneof(
            {
              arbitrary: mutation.map((m) => ({
                payload: JSON.stringify(mutate(endpoint.seed!(), m)) ?? "",
                contentType: "application/json",
              })),
              weight: 6,
            },
            { arbitrary: rawJsonTexts.map((payload) => ({ payload, contentType: "application/json" })), weight: 2 },
            {
              arbitrary: fc
                .record({
                  m: mutation,
                  extra: fc.array(
                    fc.tuple(
                      hostileKeys,
                      hostileStrings.filter((v) => v.length < 5_000),
                    ),
                    { maxLength: 3 },
                  ),
                  file: fc.boolean(),
                  broken: fc.boolean(),
                })
                .map(({ m, extra, file, broken }) => {
                  const { payload, contentType } = multipartBody([...flattenFields(mutate(endpoint.seed!(), m)), ...extra], {
                    file,
                    broken: broken && file,
                  });
                  return { payload, contentType };
                }),
              weight: endpoint.body === "form" ? 3 : 1,
            },
            {
              arbitrary: fc.record({
                payload: fc.string({ maxLength: 50 }),
                contentType: fc.constantFrom(
                  "text/plain",
                  "application/xml",
                  "application/x-www-form-urlencoded",
                  "application/json; charset=utf-16",
                  "multipart/form-data",
                  "*/*",
                  "",
                ),
              }),
              weight: 1,
            },
            { arbitrary: fc.constant({}), weight: 1 },
          );
    return fc
      .record({
        params,
        query: queryArb,
        auth: authArb(endpoint.admin === true),
        scheme: fc.oneof(
          { arbitrary: fc.constant("Bearer "), weight: 12 },
          { arbitrary: fc.constantFrom("bearer ", "Basic ", "", "Bearer  "), weight: 1 },
        ),
        headers: extraHeaders,
        body: bodyArb,
        trailingSlash: fc.boolean(),
        raw: fc.boolean(),
      })
      .map(({ params, query, auth, scheme, headers, body, trailingSlash, raw }) => {
        let path = endpoint.path;
        paramNames.forEach((name, index) => (path = path.replace(`{${name}}`, urlPart(params[index]!, raw))));
        // A raw `.`, `/`, `?`, `#` or `%` in a parameter may route the request to another endpoint (or none).
        const rerouted = params.some((param) => /^\.{0,2}$/.test(param) || (raw && /[./?#%\\]/.test(param)));
        if (trailingSlash && !path.endsWith("/")) path += "/";
        const search = query.map(([key, value]) => `${urlPart(key, raw)}=${urlPart(value, raw)}`).join("&");
        const requestHeaders: Record<string, string> = { ...headers };
        if (auth !== undefined) requestHeaders.authorization = scheme + auth;
        if (body.contentType) requestHeaders["content-type"] = body.contentType;
        return {
          rerouted,
          method: endpoint.method as InjectOptions["method"],
          url: search ? `${path}?${search}` : path,
          headers: requestHeaders,
          ...(body.payload !== undefined && { payload: body.payload }),
        };
      });
  };

  /**
   * An endless stream's answer: a 200 with its headers and no body (the stream is dropped), anything else
   * whole. The server ends the dropped streams when the app closes.
   */
  const injectEndless = async (options: InjectOptions): Promise<LightMyRequestResponse> => {
    const response = await t.app.inject({ ...options, payloadAsStream: true });
    const stream = response.stream();
    let body = "";
    if (response.statusCode === 200) stream.destroy();
    else for await (const chunk of stream) body += String(chunk);
    const answer = {
      statusCode: response.statusCode,
      headers: response.headers,
      body,
      payload: body,
      json: () => JSON.parse(body) as unknown,
    };
    return answer as unknown as LightMyRequestResponse;
  };

  /** Status, envelope and body shape of one answer; returns a failure message or undefined. */
  const judge = (endpoint: Endpoint, response: LightMyRequestResponse, rerouted: boolean): string | undefined => {
    const status = response.statusCode;
    const own = endpoint.documented ? (documented.get(`${endpoint.method} ${endpoint.documented}`) ?? []) : (endpoint.statuses ?? []);
    const allowed = [...(rerouted ? [...documented.values()].flat() : own), ...WIRE_STATUSES];
    if (status >= 500) return `server error ${status}: ${response.body.slice(0, 300)}\n${t.logs.slice(-2).join("\n").slice(0, 3000)}`;
    if (!allowed.includes(status))
      return `undocumented status ${status} (documented: ${allowed.join(", ")}): ${response.body.slice(0, 300)}`;
    if (status >= 400) {
      let body: unknown;
      try {
        body = response.json();
      } catch {
        return `error ${status} is not JSON: ${response.body.slice(0, 200)}`;
      }
      const envelope = body as { code?: unknown; error?: unknown; reason?: unknown };
      if (Object.keys(envelope).sort().join() !== "code,error,reason") return `not the envelope: ${response.body.slice(0, 200)}`;
      if (envelope.code !== status) return `code ${String(envelope.code)} ≠ status ${status}`;
      if (envelope.error !== (status === 422 ? "Validation Failed" : STATUS_CODES[status])) return `error text ${String(envelope.error)}`;
      const reasonOk =
        status === 422
          ? Array.isArray(envelope.reason) &&
            envelope.reason.length > 0 &&
            envelope.reason.every(
              (issue: { path?: unknown; message?: unknown }) => typeof issue.path === "string" && typeof issue.message === "string",
            )
          : typeof envelope.reason === "string" && envelope.reason.length > 0;
      if (!reasonOk) return `bad reason: ${response.body.slice(0, 200)}`;
    } else if (status !== 204 && status !== 301 && status !== 302 && status !== 304) {
      const type = String(response.headers["content-type"] ?? "");
      if (type.startsWith("application/json")) JSON.parse(response.body);
      else if (!/^(text\/html|text\/plain|text\/event-stream|text\/css|application\/javascript|text\/javascript)/.test(type))
        return `unexpected content type ${type}`;
    }
    const isClaim = endpoint.path.endsWith("/claim") && status === 200;
    if (!isClaim && PROVIDER_SECRETS.some((secret) => response.body.includes(secret))) return "a provider key in the response";
    if (!response.headers["x-request-id"]) return "no x-request-id";
    return undefined;
  };

  it(`answers ${TOTAL_REQUESTS} generated requests with documented statuses, in the envelope, never a 5xx, changing nothing when rejecting`, async () => {
    const totalWeight = endpoints.reduce((sum, endpoint) => sum + endpoint.weight, 0);
    for (const endpoint of endpoints) {
      const numRuns = Math.max(50, Math.round((TOTAL_REQUESTS * endpoint.weight) / totalWeight));
      let before = await fingerprint();
      await fc.assert(
        fc.asyncProperty(requestFor(endpoint), async (request) => {
          const { rerouted, ...options } = request;
          let response: LightMyRequestResponse;
          try {
            response = endpoint.endless ? await injectEndless(options) : await t.app.inject(options);
          } catch (error) {
            // Only what no HTTP client could send (an invalid header) may be refused by inject itself.
            expect((error as NodeJS.ErrnoException).code).toMatch(/^ERR_(INVALID_CHAR|HTTP_INVALID_HEADER_VALUE|INVALID_HTTP_TOKEN)/);
            return;
          }
          sent++;
          statusCounts.set(response.statusCode, (statusCounts.get(response.statusCode) ?? 0) + 1);
          const problem = judge(endpoint, response, rerouted);
          expect(problem, `${options.method} ${String(options.url).slice(0, 200)}`).toBeUndefined();
          const after = await fingerprint();
          if (response.statusCode >= 400) expect(after, `a rejected ${response.statusCode} changed the database`).toBe(before);
          before = after;
          expect(Object.getOwnPropertyNames(Object.prototype).sort()).toEqual(prototypeKeys);
          expect(({} as Record<string, unknown>).polluted).toBeUndefined();
        }),
        { numRuns, endOnFailure: false },
      );
    }
    expect(sent).toBeGreaterThanOrEqual(TOTAL_REQUESTS * 0.95);
  }, 600_000);

  /** Checks a 200 checkpoint post against what was sent: every free-form value comes back exactly, GET gives the same bytes. */
  const faithful = async (response: LightMyRequestResponse, sentText: string, url: string): Promise<string | undefined> => {
    const sentBody = JSON.parse(sentText) as { checkpoint: Record<string, unknown>; step: Record<string, any> };
    const checkpoint = response.json().data.checkpoint as Record<string, any>;
    const pairs: Array<[string, unknown, unknown]> = [
      ["messages", checkpoint.messages, sentBody.checkpoint.messages],
      ["newMessages", checkpoint.newMessages, sentBody.step.newMessages],
      ["inputMessages", checkpoint.inputMessages, sentBody.step.inputMessages],
      ["toolCall.args", checkpoint.toolCall?.args, sentBody.step.toolCall?.args],
      ["toolCall.skillName", checkpoint.skillName, sentBody.step.toolCall?.skillName],
      ["toolResult.result", checkpoint.toolResult?.result, sentBody.step.toolResult?.result],
    ];
    for (const [name, answered, posted] of pairs) {
      if (JSON.stringify(answered) !== JSON.stringify(posted)) return `${name} came back changed`;
    }
    const got = await t.app.inject({
      method: "GET",
      url: `${url.replace(/\/$/, "")}/${checkpoint.id}`,
      headers: { authorization: `Bearer ${tenant.clientKey}` },
    });
    return got.body === response.body ? undefined : "GET answers other bytes than the post";
  };

  it(`answers ${CLASS_REQUESTS} bodies carrying lone surrogates, U+0000, deep nesting, huge numbers, prototype keys and wrong types in every field of every write endpoint: never a 5xx, kept exactly when accepted`, async () => {
    const writes = endpoints.filter((endpoint) => endpoint.seed);
    const casesPerEndpoint = Math.ceil(CLASS_REQUESTS / writes.length);
    // Jobs that take checkpoints, so that accepted posts are many (the other property may have stopped the pool's jobs,
    // and deleted the provider key a start needs).
    await t.app.providerKeys.put(tenant.applicationId, "anthropic", PROVIDER_SECRETS[0]!);
    const openJobs = await Promise.all([1, 2].map(async () => (await jobInStatus(t.app, tenant, "processing")).job.id as string));
    const classCounts = new Map<string, number>();
    let sentHere = 0;
    let keptExactly = 0;
    for (const endpoint of writes) {
      const checkpointPost = endpoint.path.endsWith("/checkpoints");
      let before = await fingerprint();
      await fc.assert(
        fc.asyncProperty(
          fc.record({
            params: fc.tuple(
              ...Object.values(endpoint.params).map((kind) => fc.constantFrom(...(checkpointPost ? openJobs : poolFor(kind!)))),
            ),
            placement: placementArb,
            hostile: hostileClassValue,
            form: fc.boolean(),
          }),
          async ({ params, placement, hostile, form }) => {
            let path = endpoint.path;
            Object.keys(endpoint.params).forEach((name, index) => (path = path.replace(`{${name}}`, params[index]!)));
            const text = placeHostile(endpoint.seed!(), placement, hostile);
            const headers: Record<string, string> = {
              // A runtime key may call every studio endpoint.
              authorization: `Bearer ${endpoint.admin ? ADMIN_TOKEN : tenant.runtimeKey}`,
            };
            let payload: string | Buffer = text;
            // Form endpoints also get the same fields as multipart/form-data, where everything is text.
            if (form && endpoint.body === "form" && hostile.raw === undefined) {
              const multipart = multipartBody(flattenFields(JSON.parse(text)), {});
              payload = multipart.payload;
              headers["content-type"] = multipart.contentType;
            } else headers["content-type"] = "application/json";
            const response = await t.app.inject({ method: endpoint.method as InjectOptions["method"], url: path, headers, payload });
            sentHere++;
            classCounts.set(hostile.kind, (classCounts.get(hostile.kind) ?? 0) + 1);
            statusCounts.set(response.statusCode, (statusCounts.get(response.statusCode) ?? 0) + 1);
            expect(judge(endpoint, response, false), `${endpoint.method} ${path} ${hostile.kind}: ${text.slice(0, 300)}`).toBeUndefined();
            if (checkpointPost && response.statusCode === 200 && typeof payload === "string") {
              expect(await faithful(response, text, path), `${hostile.kind}: ${text.slice(0, 300)}`).toBeUndefined();
              keptExactly++;
            }
            const after = await fingerprint();
            if (response.statusCode >= 400) expect(after, `a rejected ${response.statusCode} changed the database`).toBe(before);
            before = after;
            expect(({} as Record<string, unknown>).polluted).toBeUndefined();
            expect(Object.getOwnPropertyNames(Object.prototype).sort()).toEqual(prototypeKeys);
          },
        ),
        { numRuns: casesPerEndpoint, endOnFailure: false },
      );
    }
    sent += sentHere;
    console.info(
      `fuzz, hostile values: ${sentHere} requests (${keptExactly} accepted checkpoints checked byte for byte); ` +
        [...classCounts].map(([kind, count]) => `${kind}×${count}`).join(" "),
    );
    expect(keptExactly).toBeGreaterThan(0);
    expect(sentHere).toBeGreaterThanOrEqual(CLASS_REQUESTS);
  }, 600_000);
});

describe("what fuzzing found (regressions)", () => {
  let t: TestApp;
  let tenant: Tenant;
  beforeAll(async () => {
    t = await startTestApp();
    tenant = await seedTenant(t.app);
  });
  afterAll(async () => t?.close());

  const auth = () => ({ authorization: `Bearer ${tenant.clientKey}` });

  it("a malformed URL → 400 in the envelope, with a request id", async () => {
    const response = await t.app.inject({ method: "GET", url: "/api/studio/v1/expert_jobs/%E0%A4%A", headers: auth() });
    expect(response.statusCode).toBe(400);
    expect(response.json()).toEqual({ code: 400, error: "Bad Request", reason: "Malformed URL" });
    expect(response.headers["x-request-id"]).toBeTruthy();
  });

  it("an over-long path id → 422, never the router's 414", async () => {
    const response = await t.app.inject({ method: "GET", url: `/api/studio/v1/expert_jobs/${"9".repeat(400)}`, headers: auth() });
    expect(response.statusCode).toBe(422);
    expect(response.json()).toMatchObject({ code: 422, error: "Validation Failed" });
  });

  it.each(["Infinity", "-Infinity", "1e400", "9".repeat(400)])(
    "take=%s and skip past 32 bits → 422, not a database error",
    async (value) => {
      const take = await t.app.inject({ method: "GET", url: `/api/studio/v1/expert_jobs?take=${value}`, headers: auth() });
      expect(take.statusCode).toBe(422);
      expect(take.json().reason[0].path).toBe("/take");
      const skip = await t.app.inject({ method: "GET", url: `/api/studio/v1/expert_jobs?skip=${"9".repeat(12)}`, headers: auth() });
      expect(skip.statusCode).toBe(422);
      expect(skip.json().reason[0].path).toBe("/skip");
    },
  );

  it("a temperature of Infinity in a form → 422, nothing stored", async () => {
    const before = await t.app.prisma.expertJob.count();
    const { payload, contentType } = multipartBody(
      [
        ["expertKey", tenant.expert.key],
        ["query", "x"],
        ["temperature", "Infinity"],
      ],
      {},
    );
    const response = await t.app.inject({
      method: "POST",
      url: "/api/studio/v1/expert_jobs",
      payload,
      headers: { ...auth(), "content-type": contentType },
    });
    expect(response.statusCode).toBe(422);
    expect(await t.app.prisma.expertJob.count()).toBe(before);
  });

  it("U+0000 in a text field or a query → 422 naming the field, nothing stored (Postgres text refuses it)", async () => {
    const before = await databaseDigest(t.app);
    const client = api(t.app, tenant.clientKey);
    const answers = [
      await client.post("/expert_jobs", { expertKey: tenant.expert.key, query: "a\u0000b" }),
      await client.post("/expert_jobs", { expertKey: tenant.expert.key, files: ["ok", "a\u0000b"] }),
      await client.get("/expert_jobs?filter=a%00b"),
      await t.app.inject({
        method: "POST",
        url: `/api/admin/v1/applications/${tenant.applicationId}/api_keys`,
        headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
        payload: { scope: "client", name: "a\u0000" },
      }),
    ];
    expect(answers.map((answer) => [answer.statusCode, answer.json().reason[0].path])).toEqual([
      [422, "/query"],
      [422, "/files"],
      [422, "/filter"],
      [422, "/name"],
    ]);
    expect(answers[0]!.json().reason[0].message).toBe("must not contain U+0000");
    expect(await databaseDigest(t.app)).toEqual(before);
  });

  it("an unterminated multipart body → 400 Malformed multipart body, not a 500", async () => {
    const { payload, contentType } = multipartBody([["query", "x"]], { file: true, broken: true });
    const response = await t.app.inject({
      method: "POST",
      url: "/api/studio/v1/expert_jobs",
      payload,
      headers: { ...auth(), "content-type": contentType },
    });
    expect(response.statusCode).toBe(400);
    expect(response.json()).toEqual({ code: 400, error: "Bad Request", reason: "Malformed multipart body" });
  });
});
