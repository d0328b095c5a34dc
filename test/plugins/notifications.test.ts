import { randomBytes } from "node:crypto";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ConfigError, loadConfig } from "../../src/config.ts";
import { channels } from "../../src/db/channels.ts";
import { Publisher, type Notification } from "../../src/notify/publisher.ts";
import { ADMIN_TOKEN, createTestDatabase, startTestApp, usingPostgres, type TestApp, type TestDatabase } from "../helpers/app.ts";
import { api, checkpointBody, claimJob, eventually, seedTenant, startJob, type Tenant } from "../helpers/fixtures.ts";
import { backendCases, natsServerInstalled, NATS_SERVER, PrivateNats } from "../helpers/nats.ts";
import { freePort } from "../helpers/ports.ts";
import { openSse, streamThroughOutage, type SseStream } from "../helpers/sse.ts";

const streamPath = (jobId: string) => `/api/studio/v1/expert_jobs/${jobId}/checkpoints/stream`;
const messageIds = (stream: SseStream) => stream.events.filter((event) => event.event === "message").map((event) => event.id);
const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, index) => String(from + index));

async function postSteps(app: TestApp, tenant: Tenant, jobId: string, steps: number[], extra: Parameters<typeof checkpointBody>[1] = {}) {
  for (const stepNumber of steps) {
    const response = await api(app.app, tenant.runtimeKey).post(
      `/expert_jobs/${jobId}/checkpoints/`,
      checkpointBody(tenant, { stepNumber, ...extra }),
    );
    expect(response.statusCode, response.body).toBe(200);
  }
}

const silentLog = { warn() {}, info() {}, error() {}, debug() {} } as never;

describe("Publisher (the send side, one per instance)", () => {
  it("sends what commits while a batch is on its way in the next batch, a job's checkpoints merged into its newest", async () => {
    const batches: Notification[][] = [];
    let release!: () => void;
    const publisher = new Publisher(
      async (batch) => {
        batches.push([...batch]);
        await new Promise<void>((resolve) => (release = resolve));
      },
      silentLog,
      { retry: { initialDelayMs: 1, maxDelayMs: 1 } },
    );
    publisher.checkpointCreated({ expertJobId: "a", seq: 1 });
    publisher.checkpointCreated({ expertJobId: "b", seq: 1 });
    await eventually(async () => batches.length === 1);
    // The first batch is on its way: these wait, and a's two checkpoints become one notification.
    publisher.checkpointCreated({ expertJobId: "a", seq: 2 });
    publisher.checkpointCreated({ expertJobId: "a", seq: 3 });
    publisher.expertJobChanged({ expertJobId: "a", applicationId: "app", status: "queued" });
    publisher.expertJobChanged({ expertJobId: "a", applicationId: "app", status: "processing" });
    release();
    await eventually(async () => batches.length === 2);
    release();
    await publisher.close(1_000);
    expect(batches.map((batch) => batch.map(({ channel, payload }) => [channel, JSON.parse(payload)]))).toEqual([
      [
        [channels.checkpointCreated, { expertJobId: "a", seq: 1 }],
        [channels.checkpointCreated, { expertJobId: "b", seq: 1 }],
      ],
      [
        [channels.checkpointCreated, { expertJobId: "a", seq: 3 }],
        // Statuses are not merged: a claim waits for `queued`, which `processing` must not hide.
        [channels.expertJobChanged, { expertJobId: "a", applicationId: "app", status: "queued" }],
        [channels.expertJobChanged, { expertJobId: "a", applicationId: "app", status: "processing" }],
      ],
    ]);
    expect([publisher.sent, publisher.batches]).toEqual([5, 2]);
  });

  it("keeps what a failed send held and sends it again, behind nothing newer of the same job", async () => {
    const sent: Notification[][] = [];
    let failures = 2;
    const publisher = new Publisher(
      async (batch) => {
        if (failures-- > 0) throw new Error("database unreachable");
        sent.push([...batch]);
      },
      silentLog,
      { retry: { initialDelayMs: 1, maxDelayMs: 5 } },
    );
    publisher.checkpointCreated({ expertJobId: "a", seq: 1 });
    publisher.apiKeyRevoked({ apiKeyId: "k" });
    await eventually(async () => sent.length === 1);
    await publisher.close(1_000);
    expect(sent[0]!.map(({ channel }) => channel).sort()).toEqual([channels.apiKeyRevoked, channels.checkpointCreated].sort());
  });
});

describe(`a notification lost between commit and send is caught up by the safety re-read (${usingPostgres() ? "PostgreSQL" : "PGlite"})`, () => {
  let t: TestApp;
  let tenant: Tenant;
  let base: string;
  beforeAll(async () => {
    // Every notification is dropped after its commit, as a crash between commit and send would.
    t = await startTestApp({ config: { notifySafetyIntervalMs: 150 }, notifications: { sendFilter: () => false } });
    tenant = await seedTenant(t.app);
    base = await t.app.listen({ port: 0, host: "127.0.0.1" });
  });
  afterAll(async () => t.close());

  it("a stream gets every checkpoint once, in order, and its `complete`", async () => {
    const job = await startJob(t.app, tenant);
    await postSteps(t, tenant, job.id, [1]);
    const stream = await openSse(base + streamPath(job.id), { authorization: `Bearer ${tenant.clientKey}` });
    await stream.waitFor(1);
    const wakes = t.app.streamHub.safetyWakes;
    await postSteps(t, tenant, job.id, [2, 3]);
    await stream.waitFor(3, 15_000);
    await postSteps(t, tenant, job.id, [4], { status: "completed", toolCall: undefined });
    await stream.ended;
    expect(messageIds(stream)).toEqual(range(1, 4));
    expect(stream.events.at(-1)!.event).toBe("complete");
    expect(t.app.streamHub.safetyWakes).toBeGreaterThan(wakes);
    expect(t.app.notifier.sent).toBe(0);
  });

  it("a waiting claim gets the job queued after it started waiting", async () => {
    const waiting = claimJob(t.app, tenant, 20_000);
    await eventually(async () => t.app.runtime.waitingClaims === 1);
    const wakes = t.app.runtime.safetyWakes;
    const job = await startJob(t.app, tenant);
    const response = await waiting;
    expect(response.statusCode).toBe(200);
    expect(response.json().data.claim.expertJob.id).toBe(job.id);
    expect(t.app.runtime.safetyWakes).toBeGreaterThan(wakes);
  });

  it("a revoked key's stream ends, and its waiting claim answers 401", async () => {
    const job = await startJob(t.app, tenant);
    await postSteps(t, tenant, job.id, [1]);
    const client = await t.app.admin.createApiKey(tenant.applicationId, "client");
    const runtime = await t.app.admin.createApiKey(tenant.applicationId, "runtime");
    const stream = await openSse(base + streamPath(job.id), { authorization: `Bearer ${client.key}` });
    await stream.waitFor(1);
    const waiting = api(t.app, runtime.key).post("/expert_jobs/claim", { waitMs: 20_000 });
    await eventually(async () => t.app.runtime.waitingClaims === 1);
    for (const key of [client, runtime]) {
      const revoked = await t.app.inject({
        method: "DELETE",
        url: `/api/admin/v1/api_keys/${key.id}`,
        headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
      });
      expect(revoked.statusCode).toBe(204);
    }
    await stream.ended;
    expect(messageIds(stream)).toEqual(["1"]);
    expect((await waiting).statusCode).toBe(401);
  });
});

for (const backend of backendCases) {
  describe.skipIf(!usingPostgres() || backend.skip !== undefined)(
    `instance A commits and dies before sending, notifications over ${backend.name} (${backend.skip ?? "Postgres only: PGlite is one process"})`,
    () => {
      it("a stream on instance B still gets every checkpoint A posted, by B's safety re-read", async () => {
        const db = await createTestDatabase();
        const config = { notify: backend.notify(db), notifySafetyIntervalMs: 150 };
        const a = await startTestApp({ db, config, notifications: { sendFilter: () => false } });
        const b = await startTestApp({ db, config });
        try {
          const tenant = await seedTenant(a.app);
          const job = await startJob(a.app, tenant);
          const baseB = await b.app.listen({ port: 0, host: "127.0.0.1" });
          const stream = await openSse(baseB + streamPath(job.id), { authorization: `Bearer ${tenant.clientKey}` });
          await postSteps(a, tenant, job.id, [1, 2, 3]);
          await postSteps(a, tenant, job.id, [4], { status: "completed", toolCall: undefined });
          await stream.ended;
          expect(messageIds(stream)).toEqual(range(1, 4));
          expect([a.app.notifier.sent, b.app.streamHub.safetyWakes > 0]).toEqual([0, true]);
        } finally {
          await a.close();
          await b.close();
          await db.drop();
        }
      });
    },
  );
}

describe.skipIf(!usingPostgres())("PostgreSQL: NOTIFY outside the write transaction (Postgres only: PGlite notifies in process)", () => {
  it("a checkpoint's write sends no NOTIFY of its own: only the publisher's, after the commit", async () => {
    // The checkpoint's notification is dropped, its job's status change is not: if the write itself still
    // notified, that would arrive first (on its commit), before the publisher's one.
    const t = await startTestApp({ notifications: { sendFilter: (notification) => notification.channel !== channels.checkpointCreated } });
    const listener = new pg.Client({ connectionString: t.db.url });
    try {
      const tenant = await seedTenant(t.app);
      const job = await startJob(t.app, tenant);
      // The start's own notification is out before this LISTENs.
      await eventually(async () => t.app.notifier.sent === 1);
      await listener.connect();
      const heard: Array<[string, unknown]> = [];
      listener.on("notification", (message) => heard.push([message.channel, JSON.parse(message.payload!)]));
      for (const channel of [channels.checkpointCreated, channels.expertJobChanged]) await listener.query(`LISTEN "${channel}"`);
      await postSteps(t, tenant, job.id, [1]);
      await eventually(async () => heard.length > 0);
      expect(heard).toEqual([
        [channels.expertJobChanged, { expertJobId: job.id, applicationId: tenant.applicationId, status: "processing" }],
      ]);
    } finally {
      await listener.end();
      await t.close();
    }
  });
});

describe("NOTIFY_BACKEND and NATS_URL", () => {
  const postgres = { DATABASE_URL: "postgresql://postgres@127.0.0.1:5432/x", SECRETS_KEY: randomBytes(32).toString("base64") };

  it("default to PostgreSQL NOTIFY and a local NATS, with a 5 s safety re-read", () => {
    const config = loadConfig(postgres);
    expect([config.notify, config.notifySafetyIntervalMs]).toEqual([{ kind: "postgres" }, 5_000]);
    expect(loadConfig({ ...postgres, NOTIFY_BACKEND: "nats" }).notify).toEqual({
      kind: "nats",
      servers: ["nats://127.0.0.1:4222"],
      subjectPrefix: "expert_jobs",
    });
    expect(loadConfig({ ...postgres, NOTIFY_BACKEND: "nats", NATS_URL: "nats://a:4222, tls://b:4223" }).notify).toMatchObject({
      servers: ["nats://a:4222", "tls://b:4223"],
    });
  });

  it("refuse NATS on embedded PGlite, other backends, and URLs that are not NATS's", () => {
    expect(() => loadConfig({ NOTIFY_BACKEND: "nats" })).toThrow(
      new ConfigError("NOTIFY_BACKEND: nats needs DATABASE_URL (embedded PGlite is one process and notifies in process)"),
    );
    expect(() => loadConfig({ ...postgres, NOTIFY_BACKEND: "redis" })).toThrow(ConfigError);
    expect(() => loadConfig({ ...postgres, NOTIFY_BACKEND: "nats", NATS_URL: "http://x:4222" })).toThrow(
      /^NATS_URL: http:\/\/x:4222 is not/,
    );
    expect(() => loadConfig({ ...postgres, NATS_SUBJECT_PREFIX: "a b" })).toThrow(ConfigError);
    expect(() => loadConfig({ ...postgres, NOTIFY_SAFETY_INTERVAL_MS: "10" })).toThrow(ConfigError);
  });
});

describe.skipIf(!usingPostgres() || !natsServerInstalled)(
  `NATS restarts mid-stream (a private nats-server; ${!natsServerInstalled ? `skipped: no ${NATS_SERVER}` : "Postgres only: NATS needs DATABASE_URL"})`,
  () => {
    let nats: PrivateNats;
    let db: TestDatabase;
    let a: TestApp;
    let b: TestApp;
    let tenant: Tenant;
    let baseB: string;

    beforeAll(async () => {
      nats = await PrivateNats.start();
      db = await createTestDatabase();
      // The safety re-read is slowed down: what was posted during the outage arrives by the reconnect's catch-up.
      const options = {
        db,
        config: { notify: { kind: "nats" as const, servers: [nats.url], subjectPrefix: "restart" }, notifySafetyIntervalMs: 600_000 },
        notifications: { reconnect: { initialDelayMs: 20, maxDelayMs: 200 }, heartbeatMs: 500 },
      };
      a = await startTestApp(options);
      b = await startTestApp(options);
      tenant = await seedTenant(a.app);
      baseB = await b.app.listen({ port: 0, host: "127.0.0.1" });
    }, 60_000);
    afterAll(async () => {
      await a?.app.close();
      await b?.app.close();
      await db?.drop();
      await nats?.kill();
    });

    it("loses and repeats nothing: a stream on B gets what A posted before, during and after the outage", async () => {
      const job = await startJob(a.app, tenant);
      const stream = await openSse(baseB + streamPath(job.id), { authorization: `Bearer ${tenant.clientKey}` });
      // Posted while NATS is down, 3 and 4 come by B's reconnect catch-up (without it the stream stops at 2).
      await streamThroughOutage(stream, (steps) => postSteps(a, tenant, job.id, steps), {
        begin: async () => {
          await nats.kill();
          await eventually(async () => !a.app.notifications.connected && !b.app.notifications.connected, 10_000);
          const scrape = await b.app.inject({ method: "GET", url: "/metrics" });
          expect(scrape.body).toMatch(/^expert_jobs_notification_listener_up 0$/m);
        },
        end: async () => {
          await nats.start();
          await eventually(async () => a.app.notifications.connected && b.app.notifications.connected, 15_000);
        },
      });
    });

    it("start-up names NATS_URL when NATS does not answer", async () => {
      const port = await freePort();
      await expect(
        startTestApp({
          db,
          config: { notify: { kind: "nats", servers: [`nats://127.0.0.1:${port}`], subjectPrefix: "x" } },
          notifications: { connectTimeoutMs: 300, reconnect: { initialDelayMs: 20, maxDelayMs: 100 } },
        }),
      ).rejects.toThrow(`NATS_URL: cannot connect to NATS at nats://127.0.0.1:${port} within 1 s`);
    });
  },
);
