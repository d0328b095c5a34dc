import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestApp, ADMIN_TOKEN, type TestApp } from "../helpers/app.ts";
import { api, checkpointBody, jobInStatus, seedTenant, startJob, type Tenant } from "../helpers/fixtures.ts";
import { openSse } from "../helpers/sse.ts";

/**
 * Secrets never leave through a response or a log line, even at `trace`: provider keys (only a claim
 * hands one to its runtime), API keys in `Authorization` or `?access_token=`, and the ADMIN_TOKEN.
 */
function decodedFully(text: string): string {
  for (let round = 0; round < 4; round++) {
    try {
      const next = decodeURIComponent(text);
      if (next === text) break;
      text = next;
    } catch {
      break;
    }
  }
  return text;
}

describe("secrets in responses and logs", () => {
  let t: TestApp;
  let tenant: Tenant;
  let base: string;
  const providerSecret = `sk-ant-api03-${randomBytes(24).toString("base64url")}`;
  const replacedSecret = `sk-openai-${randomBytes(24).toString("base64url")}`;
  const bodies: string[] = [];

  const record = <T extends { body: string }>(response: T): T => {
    bodies.push(response.body);
    return response;
  };

  beforeAll(async () => {
    t = await startTestApp({ captureLogs: "trace" });
    tenant = await seedTenant(t.app);
    await t.app.providerKeys.put(tenant.applicationId, "anthropic", providerSecret);
    base = await t.app.listen({ port: 0, host: "127.0.0.1" });
  });
  afterAll(async () => t.close());

  it("exercises every endpoint, then finds the provider key only in the claim's answer and no secret in any log line", async () => {
    const client = api(t.app, tenant.clientKey);
    const runtime = api(t.app, tenant.runtimeKey);
    const admin = (method: "POST" | "PUT" | "DELETE", url: string, payload?: unknown) =>
      t.app.inject({
        method,
        url: `/api/admin/v1${url}`,
        headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
        ...(payload !== undefined && { payload: payload as object }),
      });

    // Admin: the key goes in, never comes out.
    record(await admin("PUT", `/applications/${tenant.applicationId}/provider_keys/openai`, { key: replacedSecret }));
    record(await admin("PUT", `/applications/${tenant.applicationId}/provider_keys/openai`, { key: replacedSecret, extra: 1 }));
    record(await admin("PUT", `/applications/${tenant.applicationId}/provider_keys/nope`, { key: replacedSecret }));
    record(await admin("POST", "/organizations", { name: `org-${randomBytes(4).toString("hex")}` }));

    // Client and runtime endpoints, successes and failures.
    const job = record(
      await client.post("/expert_jobs", { expertKey: tenant.expert.key, query: "Do it", model: "claude-sonnet-4-5" }),
    ).json().data.expertJob;
    record(await client.post("/expert_jobs", { expertKey: tenant.expert.key, query: "Do it", model: "gpt-5" }));
    record(await client.get("/expert_jobs"));
    record(await client.get(`/expert_jobs/${job.id}`));
    const claim = record(await runtime.post("/expert_jobs/claim", { waitMs: 0 }));
    expect(claim.statusCode).toBe(200);
    expect(claim.json().data.claim.providerKey).toEqual({ provider: "anthropic", key: providerSecret });
    const claimBody = bodies.pop()!;
    const checkpoint = record(await runtime.post(`/expert_jobs/${job.id}/checkpoints/`, checkpointBody(tenant))).json().data.checkpoint;
    record(await runtime.post(`/expert_jobs/${job.id}`, { status: "processing" }));
    record(await client.get(`/expert_jobs/${job.id}/checkpoints/${checkpoint.id}`));
    record(await client.get(`/expert_jobs/${job.id}/checkpoints`));
    record(await client.post(`/expert_jobs/${job.id}/continue`, { query: "more" }));
    record(await client.post(`/expert_jobs/${job.id}/resume_from`, { checkpointId: checkpoint.id }));
    record(await client.post(`/expert_jobs/${job.id}/cancel`));
    const paused = await jobInStatus(t.app, tenant, "requestInteractiveToolResult");
    record(await client.post(`/expert_jobs/${paused.job.id}/continue`, { query: "yes", interactiveToolCallResult: true }));
    record(await runtime.post("/expert_jobs/claim", { waitMs: 0 }));
    bodies.pop();
    for (const url of ["/healthz", "/readyz", "/metrics", "/openapi.json"]) record(await t.app.inject({ method: "GET", url }));

    // A stream, by header and by ?access_token= (EventSource), and refused ones.
    const streamed = await startJob(t.app, tenant);
    const byHeader = await openSse(`${base}/api/studio/v1/expert_jobs/${streamed.id}/checkpoints/stream`, {
      authorization: `Bearer ${tenant.clientKey}`,
    });
    const byQuery = await openSse(
      `${base}/api/studio/v1/expert_jobs/${streamed.id}/checkpoints/stream?access_token=${encodeURIComponent(tenant.clientKey)}`,
    );
    await runtime.post(`/expert_jobs/${streamed.id}/checkpoints/`, checkpointBody(tenant));
    await Promise.all([byHeader.waitFor(1), byQuery.waitFor(1)]);
    bodies.push(...[byHeader, byQuery].flatMap((stream) => stream.events.map((event) => event.data)));
    byHeader.close();
    byQuery.close();
    record(
      await t.app.inject({
        method: "GET",
        url: `/api/studio/v1/expert_jobs/${streamed.id}/checkpoints/stream?access_token=${tenant.clientKey}x`,
      }),
    );
    record(await t.app.inject({ method: "GET", url: `/api/studio/v1/expert_jobs?access_token=${tenant.clientKey}` }));
    record(
      await t.app.inject({ method: "GET", url: "/api/studio/v1/expert_jobs", headers: { authorization: `Bearer ${tenant.runtimeKey}0` } }),
    );

    // The token by every spelling a query string allows (`access%5Ftoken` and `%61ccess_token` authenticate), and keys
    // sent where they do not belong: all masked in the log.
    const secretKey = tenant.clientKey;
    const encodedKey = [...secretKey].map((char) => `%${char.charCodeAt(0).toString(16)}`).join("");
    for (const query of [
      `access%5Ftoken=${secretKey}`,
      `%61ccess_token=${secretKey}`,
      `%61ccess%5ftoken=${encodeURIComponent(secretKey)}`,
      `after=0;access_token=${secretKey}`,
      `access_token%3D${secretKey}`,
      `access_token=${encodedKey}`,
      `access%255Ftoken=${secretKey}`,
      `ACCESS_TOKEN=${secretKey}`,
      `filter=${secretKey}`,
    ]) {
      const stopped = (await jobInStatus(t.app, tenant, "completed")).job;
      record(await t.app.inject({ method: "GET", url: `/api/studio/v1/expert_jobs/${stopped.id}/checkpoints/stream?${query}` }));
      record(await t.app.inject({ method: "GET", url: `/api/studio/v1/expert_jobs?${query}` }));
    }
    record(await t.app.inject({ method: "GET", url: `/api/studio/v1/expert_jobs/${encodeURIComponent(secretKey)}` }));

    for (const body of bodies) {
      expect(body).not.toContain(providerSecret);
      expect(body).not.toContain(replacedSecret);
      expect(body).not.toContain(ADMIN_TOKEN);
    }
    expect(claimBody).toContain(providerSecret);

    await new Promise((resolve) => setTimeout(resolve, 50));
    const text = t.logs.join("\n");
    expect(t.logs.length).toBeGreaterThan(40);
    expect(text).toContain("access_token=[REDACTED]");
    // Decoded too: a key percent-encoded in a URL must not be in the log in any form.
    const decoded = t.logs.map(decodedFully).join("\n");
    for (const secret of [providerSecret, replacedSecret, ADMIN_TOKEN, tenant.clientKey, tenant.runtimeKey]) {
      expect(text).not.toContain(secret);
      expect(text).not.toContain(secret.slice(-20));
      expect(decoded).not.toContain(secret.slice(-20));
    }
    expect(text).not.toMatch(/bearer/i);
  });
});
