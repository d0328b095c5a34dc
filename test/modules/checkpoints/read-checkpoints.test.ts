import { createId } from "@paralleldrive/cuid2";
import fastJson from "fast-json-stringify";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestApp, type TestApp } from "../../helpers/app.ts";
import {
  api,
  checkpointBody,
  expertMessage,
  seedSiblingApplication,
  seedTenant,
  startJob,
  textPart,
  toolResultFor,
  userMessage,
  type Api,
  type Tenant,
} from "../../helpers/fixtures.ts";
import type { ExpertDigest } from "../../../src/schemas/common.ts";
import { CheckpointEnvelopeSchema, CheckpointListSchema } from "../../../src/modules/checkpoints/checkpoints.schemas.ts";

type Json = Record<string, any>;

describe("reading checkpoints", () => {
  let t: TestApp;
  let tenant: Tenant;
  let stranger: Tenant;
  let sibling: Tenant;
  let writer: ExpertDigest;
  let runtime: Api;
  let client: Api;
  /** A job with 12 checkpoints, steps 1..12 posted in order. */
  let twelve: { jobId: string; checkpoints: Json[] };
  let otherJob: { jobId: string; checkpoint: Json };

  async function post(jobId: string, body: unknown): Promise<Json> {
    const response = await runtime.post(`/expert_jobs/${jobId}/checkpoints/`, body);
    expect(response.statusCode, response.body).toBe(200);
    return response.json().data.checkpoint;
  }
  const list = (jobId: string, query = "", as: Api = client) => as.get(`/expert_jobs/${jobId}/checkpoints/${query}`);
  const getOne = (jobId: string, checkpointId: string, query = "", as: Api = client) =>
    as.get(`/expert_jobs/${jobId}/checkpoints/${checkpointId}${query}`);
  const ids = (response: { json(): Json }) => response.json().data.checkpoints.map((checkpoint: Json) => checkpoint.id);

  beforeAll(async () => {
    t = await startTestApp();
    tenant = await seedTenant(t.app);
    stranger = await seedTenant(t.app, { expertName: "@other/bot" });
    sibling = await seedSiblingApplication(t.app, tenant);
    writer = await t.app.admin.registerExpert(tenant.organizationId, { name: "@acme/writer", version: "2.0.0", description: "Writes" });
    runtime = api(t.app, tenant.runtimeKey);
    client = api(t.app, tenant.clientKey);

    const job = await startJob(t.app, tenant);
    const checkpoints: Json[] = [];
    for (let stepNumber = 1; stepNumber <= 12; stepNumber++) {
      checkpoints.push(await post(job.id, checkpointBody(tenant, { stepNumber, inputMessages: [userMessage(`input ${stepNumber}`)] })));
    }
    twelve = { jobId: job.id, checkpoints };
    const other = await startJob(t.app, tenant);
    otherJob = { jobId: other.id, checkpoint: await post(other.id, checkpointBody(tenant)) };
  });
  afterAll(async () => t.close());

  it("answers POST, GET one and the list byte for byte as the response schemas serialise them, odd messages included", async () => {
    const serializeEnvelope = fastJson(CheckpointEnvelopeSchema);
    const serializePage = fastJson(CheckpointListSchema);
    const odd = {
      z: "last key first",
      a: ["\u0000", "\u2028\u2029", "é😀\uD83D", '"quoted" \\ back/slash', "\n\t"],
      numbers: [0.1, -5, 1e21, 123456789012345, 0],
      nested: { b: null, a: true, c: [[[]], {}] },
    };
    const job = await startJob(t.app, tenant);
    const first = await runtime.post(`/expert_jobs/${job.id}/checkpoints/`, checkpointBody(tenant, { messages: [odd, userMessage("x")] }));
    const second = await runtime.post(
      `/expert_jobs/${job.id}/checkpoints/`,
      checkpointBody(tenant, { stepNumber: 2, messages: [odd, userMessage("x"), odd, expertMessage(textPart("y"))] }),
    );
    for (const posted of [first, second]) {
      expect(posted.statusCode, posted.body).toBe(200);
      expect(posted.body).toBe(serializeEnvelope(posted.json()));
      const id = posted.json().data.checkpoint.id;
      for (const query of ["", "?exclude=messages"]) {
        const one = await getOne(job.id, id, query);
        expect(one.headers["content-type"]).toBe("application/json; charset=utf-8");
        expect(one.body).toBe(serializeEnvelope(one.json()));
      }
      expect((await getOne(job.id, id)).body).toBe(posted.body);
    }
    expect(second.json().data.checkpoint.messages).toEqual([odd, expect.any(Object), odd, expect.any(Object)]);
    for (const query of ["", "?exclude=messages", "?order=desc&take=1&skip=1"]) {
      const page = await list(job.id, query);
      expect(page.headers["content-type"]).toBe("application/json; charset=utf-8");
      expect(page.body).toBe(serializePage(page.json()));
    }
  });

  describe("GET one", () => {
    it("answers {data:{checkpoint}} equal to what POST answered", async () => {
      const expected = twelve.checkpoints[4]!;
      const response = await getOne(twelve.jobId, expected.id);
      expect(response.statusCode).toBe(200);
      expect(response.json()).toEqual({ data: { checkpoint: expected } });
    });

    it("answers a runtime key too", async () => {
      const response = await getOne(twelve.jobId, twelve.checkpoints[0]!.id, "", runtime);
      expect(response.statusCode).toBe(200);
    });

    it("leaves out messages and inputMessages with exclude=messages, keeping newMessages", async () => {
      const full = twelve.checkpoints[2]!;
      const response = await getOne(twelve.jobId, full.id, "?exclude=messages");
      expect(response.statusCode).toBe(200);
      const checkpoint = response.json().data.checkpoint;
      expect(checkpoint).not.toHaveProperty("messages");
      expect(checkpoint).not.toHaveProperty("inputMessages");
      const { messages: _messages, inputMessages: _inputMessages, ...rest } = full;
      expect(checkpoint).toEqual(rest);
      expect(checkpoint.newMessages).toEqual(full.newMessages);
    });

    it("works when the GET carries Content-Type: application/json and no body", async () => {
      const response = await client.request({
        method: "GET",
        url: `/expert_jobs/${twelve.jobId}/checkpoints/${twelve.checkpoints[0]!.id}`,
        headers: { "content-type": "application/json" },
      });
      expect(response.statusCode, response.body).toBe(200);
      expect(response.json().data.checkpoint).toEqual(twelve.checkpoints[0]);
    });

    it("answers 404 Checkpoint not found to an unknown checkpoint id", async () => {
      const response = await getOne(twelve.jobId, createId());
      expect(response.statusCode).toBe(404);
      expect(response.json()).toEqual({ code: 404, error: "Not Found", reason: "Checkpoint not found" });
    });

    it("answers 404 Checkpoint not found to a checkpoint of another job of the same application", async () => {
      const response = await getOne(twelve.jobId, otherJob.checkpoint.id);
      expect(response.statusCode).toBe(404);
      expect(response.json()).toEqual({ code: 404, error: "Not Found", reason: "Checkpoint not found" });
    });

    it("answers 404 Expert job not found to an unknown job id, even with an existing checkpoint id", async () => {
      const response = await getOne(createId(), twelve.checkpoints[0]!.id);
      expect(response.statusCode).toBe(404);
      expect(response.json()).toEqual({ code: 404, error: "Not Found", reason: "Expert job not found" });
    });

    it.each([
      ["a job id that is too short", () => ["abc", twelve.checkpoints[0]!.id], "/expertJobId"],
      ["a job id in upper case", () => ["A".repeat(24), twelve.checkpoints[0]!.id], "/expertJobId"],
      ["a checkpoint id of 25 characters", () => [twelve.jobId, "a".repeat(25)], "/checkpointId"],
      ["a checkpoint id with a dash", () => [twelve.jobId, `${"a".repeat(23)}-`], "/checkpointId"],
    ])("answers 422 to %s", async (_name, idsOf, path) => {
      const [jobId, checkpointId] = idsOf();
      const response = await getOne(jobId!, checkpointId!);
      expect(response.statusCode).toBe(422);
      expect(response.json()).toEqual({ code: 422, error: "Validation Failed", reason: [{ path, message: expect.any(String) }] });
    });

    it.each(["everything", "messages,bogus", "messages,,toolResult", "messages,", "Messages", ""])(
      "answers 422 to an unknown exclude value (%j)",
      async (value) => {
        const response = await getOne(twelve.jobId, twelve.checkpoints[0]!.id, `?exclude=${value}`);
        expect(response.statusCode).toBe(422);
        expect(response.json()).toMatchObject({ code: 422, error: "Validation Failed" });
        expect(response.json().reason).toEqual([{ path: "/exclude", message: expect.any(String) }]);
      },
    );

    it.each([
      ["no Authorization header", {}],
      ["an unknown key", { authorization: `Bearer ejk_${createId()}_${"A".repeat(43)}` }],
    ])("answers 401 to %s, before validating the path", async (_name, headers) => {
      for (const url of [`/expert_jobs/${twelve.jobId}/checkpoints/${twelve.checkpoints[0]!.id}`, "/expert_jobs/bad/checkpoints/bad"]) {
        const response = await t.app.inject({ method: "GET", url: `/api/studio/v1${url}`, headers });
        expect(response.statusCode).toBe(401);
        expect(response.json()).toEqual({ code: 401, error: "Unauthorized", reason: "Failed to authenticate" });
      }
    });
  });

  describe("list", () => {
    it("defaults to take 10, skip 0, createdAt ascending", async () => {
      for (const suffix of ["/checkpoints/", "/checkpoints"]) {
        const response = await client.get(`/expert_jobs/${twelve.jobId}${suffix}`);
        expect(response.statusCode).toBe(200);
        const json = response.json();
        expect(json.meta).toEqual({ total: 12, take: 10, skip: 0 });
        expect(json.data.checkpoints).toEqual(twelve.checkpoints.slice(0, 10));
      }
    });

    it.each([
      ["?take=5&skip=10", { total: 12, take: 5, skip: 10 }, [10, 12]],
      ["?take=1", { total: 12, take: 1, skip: 0 }, [0, 1]],
      ["?take=100", { total: 12, take: 100, skip: 0 }, [0, 12]],
      ["?skip=3&take=4", { total: 12, take: 4, skip: 3 }, [3, 7]],
      ["?skip=12", { total: 12, take: 10, skip: 12 }, [12, 12]],
      ["?skip=50", { total: 12, take: 10, skip: 50 }, [12, 12]],
    ] as const)("pages with %s and echoes the numbers in meta", async (query, meta, [from, to]) => {
      const response = await list(twelve.jobId, query);
      expect(response.statusCode).toBe(200);
      expect(response.json().meta).toEqual(meta);
      expect(ids(response)).toEqual(twelve.checkpoints.slice(from, to).map((checkpoint) => checkpoint.id));
    });

    it.each([
      ["take=0", "/take"],
      ["take=101", "/take"],
      ["take=-1", "/take"],
      ["take=abc", "/take"],
      ["take=1.5", "/take"],
      ["take=", "/take"],
      ["skip=-1", "/skip"],
      ["skip=abc", "/skip"],
      ["sort=stepNumber", "/sort"],
      ["order=ascending", "/order"],
      ["filter=", "/filter"],
      [`filter=${"a".repeat(257)}`, "/filter"],
      ["exclude=inputMessages", "/exclude"],
    ])("answers 422 to the query %s", async (query, path) => {
      const response = await list(twelve.jobId, `?${query}`);
      expect(response.statusCode, response.body).toBe(422);
      const json = response.json();
      expect(json).toMatchObject({ code: 422, error: "Validation Failed" });
      expect(json.reason).toContainEqual({ path, message: expect.any(String) });
    });

    it("accepts a 256-character filter", async () => {
      const response = await list(twelve.jobId, `?filter=${"a".repeat(256)}`);
      expect(response.statusCode).toBe(200);
      expect(response.json().meta.total).toBe(0);
    });

    it("answers every page as the matching slice of the whole list, whichever end the server reads it from", async () => {
      for (const order of ["asc", "desc"]) {
        const all = twelve.checkpoints.map((checkpoint) => checkpoint.id);
        if (order === "desc") all.reverse();
        for (const take of [1, 5, 12]) {
          for (let skip = 0; skip <= 13; skip++) {
            const response = await list(twelve.jobId, `?order=${order}&take=${take}&skip=${skip}&exclude=messages`);
            expect(ids(response), `order=${order} take=${take} skip=${skip}`).toEqual(all.slice(skip, skip + take));
          }
        }
      }
    });

    it("answers items equal to GET one for each of them", async () => {
      const response = await list(twelve.jobId, "?take=3&skip=7");
      for (const checkpoint of response.json().data.checkpoints) {
        expect((await getOne(twelve.jobId, checkpoint.id)).json().data.checkpoint).toEqual(checkpoint);
      }
    });

    it("leaves out messages and inputMessages with exclude=messages, keeping newMessages", async () => {
      const full = (await list(twelve.jobId, "?take=12")).json().data.checkpoints;
      for (const checkpoint of full) {
        expect(checkpoint).toHaveProperty("messages");
        expect(checkpoint).toHaveProperty("inputMessages");
      }
      const response = await list(twelve.jobId, "?take=12&exclude=messages");
      expect(response.statusCode).toBe(200);
      const trimmed = response.json().data.checkpoints;
      expect(trimmed).toEqual(full.map(({ messages: _m, inputMessages: _i, ...rest }: Json) => rest));
      for (const checkpoint of trimmed) expect(checkpoint.newMessages.length).toBeGreaterThan(0);
    });

    it("works when the GET carries Content-Type: application/json and no body", async () => {
      const response = await client.request({
        method: "GET",
        url: `/expert_jobs/${twelve.jobId}/checkpoints/?take=2`,
        headers: { "content-type": "application/json" },
      });
      expect(response.statusCode, response.body).toBe(200);
      expect(response.json().meta).toEqual({ total: 12, take: 2, skip: 0 });
    });

    it("answers an empty page for a job without checkpoints", async () => {
      const job = await startJob(t.app, tenant);
      const response = await list(job.id);
      expect(response.statusCode).toBe(200);
      expect(response.json()).toEqual({ data: { checkpoints: [] }, meta: { total: 0, take: 10, skip: 0 } });
    });

    it("answers 404 Expert job not found to an unknown job and 422 to a bad job id", async () => {
      const unknown = await list(createId());
      expect(unknown.statusCode).toBe(404);
      expect(unknown.json()).toEqual({ code: 404, error: "Not Found", reason: "Expert job not found" });
      const bad = await list("not-an-id");
      expect(bad.statusCode).toBe(422);
      expect(bad.json().reason).toEqual([{ path: "/expertJobId", message: expect.any(String) }]);
    });

    it("answers 401 without a key", async () => {
      const response = await t.app.inject({ method: "GET", url: `/api/studio/v1/expert_jobs/${twelve.jobId}/checkpoints/` });
      expect(response.statusCode).toBe(401);
      expect(response.json()).toEqual({ code: 401, error: "Unauthorized", reason: "Failed to authenticate" });
    });

    describe("sort and order", () => {
      // Arrival order A, B, C, D with step numbers 3, 1, 2, 2.
      let jobId: string;
      let byName: Record<"A" | "B" | "C" | "D", string>;
      const names = (response: { json(): Json }) =>
        ids(response)
          .map((id: string) => Object.entries(byName).find(([, value]) => value === id)![0])
          .join("");
      async function setTimes(times: Record<string, { createdAt: string; updatedAt: string }>) {
        for (const [name, { createdAt, updatedAt }] of Object.entries(times)) {
          await t.app.prisma.$executeRaw`
            UPDATE checkpoint SET created_at = ${new Date(createdAt)}, updated_at = ${new Date(updatedAt)}
            WHERE expert_job_id = ${jobId} AND id = ${byName[name as "A"]}`;
        }
      }

      beforeAll(async () => {
        jobId = (await startJob(t.app, tenant)).id;
        const posted: string[] = [];
        for (const stepNumber of [3, 1, 2, 2]) posted.push((await post(jobId, checkpointBody(tenant, { stepNumber }))).id);
        byName = { A: posted[0]!, B: posted[1]!, C: posted[2]!, D: posted[3]! };
      });

      it("breaks createdAt ties by step number, then by arrival, and reverses all three for desc", async () => {
        const same = { createdAt: "2026-01-01T00:00:00.000Z", updatedAt: "2026-01-01T00:00:00.000Z" };
        await setTimes({ A: same, B: same, C: same, D: same });
        expect(names(await list(jobId))).toBe("BCDA");
        expect(names(await list(jobId, "?order=asc&sort=createdAt"))).toBe("BCDA");
        expect(names(await list(jobId, "?order=desc"))).toBe("ADCB");
        expect(names(await list(jobId, "?sort=updatedAt"))).toBe("BCDA");
        expect(names(await list(jobId, "?sort=updatedAt&order=desc"))).toBe("ADCB");
        // Deep pages are read backwards from the other end; the ties break the same way.
        expect(names(await list(jobId, "?take=2&skip=2"))).toBe("DA");
        expect(names(await list(jobId, "?take=1&skip=3&order=desc"))).toBe("B");
        expect(names(await list(jobId, "?take=3&skip=3&sort=updatedAt"))).toBe("A");
      });

      it("orders by the chosen timestamp before the step number", async () => {
        await setTimes({
          A: { createdAt: "2026-01-01T00:00:01.000Z", updatedAt: "2026-01-01T00:00:04.000Z" },
          B: { createdAt: "2026-01-01T00:00:02.000Z", updatedAt: "2026-01-01T00:00:03.000Z" },
          C: { createdAt: "2026-01-01T00:00:03.000Z", updatedAt: "2026-01-01T00:00:02.000Z" },
          D: { createdAt: "2026-01-01T00:00:04.000Z", updatedAt: "2026-01-01T00:00:01.000Z" },
        });
        expect(names(await list(jobId))).toBe("ABCD");
        expect(names(await list(jobId, "?order=desc"))).toBe("DCBA");
        expect(names(await list(jobId, "?sort=updatedAt"))).toBe("DCBA");
        expect(names(await list(jobId, "?sort=updatedAt&order=desc"))).toBe("ABCD");
        expect(names(await list(jobId, "?sort=updatedAt&take=2&skip=1"))).toBe("CB");
      });
    });

    describe("filter", () => {
      let jobId: string;
      let byName: Record<string, string>;
      const names = (response: { json(): Json }) =>
        ids(response)
          .map((id: string) => Object.entries(byName).find(([, value]) => value === id)![0])
          .join(",");

      beforeAll(async () => {
        jobId = (await startJob(t.app, tenant)).id;
        const readCall = { id: "call_r", skillName: "@perstack/base", toolName: "readTextFile", args: { path: "a" } };
        const mailCall = { id: "call_m", skillName: "mail_box", toolName: "send%Mail", args: {} };
        const retry = checkpointBody(tenant, { stepNumber: 4, newMessages: [expertMessage(textPart("no tool"))] });
        delete (retry.step as Json).toolCall;
        byName = {
          search: (await post(jobId, checkpointBody(tenant, { stepNumber: 1 }))).id,
          read: (
            await post(
              jobId,
              checkpointBody(tenant, {
                stepNumber: 2,
                expertKey: writer.key,
                toolCall: readCall,
                toolResult: toolResultFor(readCall, "{}"),
              }),
            )
          ).id,
          mail: (await post(jobId, checkpointBody(tenant, { stepNumber: 3, toolCall: mailCall }))).id,
          retry: (await post(jobId, retry)).id,
        };
      });

      it.each([
        ["WRITER", "read", "the expert key, case-insensitively"],
        ["helper@1.0.0", "search,mail,retry", "the expert key"],
        ["websearch", "search", "the tool name, case-insensitively"],
        ["PERSTACK/BASE", "read", "the skill name, case-insensitively"],
        ["e", "search,read,mail,retry", "any of them"],
        ["mail_box", "mail", "a skill name with an underscore"],
        ["D%m", "mail", "a tool name with a percent sign"],
        ["%", "mail", "a literal percent sign, not a wildcard"],
        ["_", "mail", "a literal underscore, not a wildcard"],
        ["web_earch", "", "an underscore that would match as a wildcard"],
        ["s%h", "", "a percent sign that would match as a wildcard"],
        ["\\", "", "a backslash"],
        ["nothing-like-it", "", "nothing"],
      ])("filter=%s matches %s (%s)", async (filter, expected) => {
        const response = await list(jobId, `?filter=${encodeURIComponent(filter)}`);
        expect(response.statusCode, response.body).toBe(200);
        expect(names(response)).toBe(expected);
        expect(response.json().meta.total).toBe(expected === "" ? 0 : expected.split(",").length);
      });

      it("a filter carrying U+0000 → 422 (Postgres text cannot hold it)", async () => {
        const response = await list(jobId, "?filter=web%00search");
        expect(response.statusCode, response.body).toBe(422);
        expect(response.json().reason).toEqual([{ path: "/filter", message: "must not contain U+0000" }]);
      });

      it("counts the filtered total across pages", async () => {
        const response = await list(jobId, "?filter=helper&take=1&skip=1");
        expect(response.json().meta).toEqual({ total: 3, take: 1, skip: 1 });
        expect(names(response)).toBe("mail");
      });
    });
  });

  describe("tenant isolation", () => {
    it.each([
      ["another organization's application", () => stranger],
      ["another application of the same organization", () => sibling],
    ])("answers 404 Expert job not found to the keys of %s", async (_name, owner) => {
      for (const key of [owner().clientKey, owner().runtimeKey]) {
        const as = api(t.app, key);
        const checkpointId = twelve.checkpoints[0]!.id;
        for (const response of [
          await list(twelve.jobId, "", as),
          await getOne(twelve.jobId, checkpointId, "", as),
          await as.get(`/expert_jobs/${twelve.jobId}`),
        ]) {
          expect(response.statusCode).toBe(404);
          expect(response.json()).toEqual({ code: 404, error: "Not Found", reason: "Expert job not found" });
        }
      }
    });

    it("lists only the caller's own checkpoints for its own jobs", async () => {
      const job = await startJob(t.app, sibling);
      const mine = await api(t.app, sibling.runtimeKey).post(`/expert_jobs/${job.id}/checkpoints/`, checkpointBody(sibling));
      expect(mine.statusCode).toBe(200);
      const response = await list(job.id, "", api(t.app, sibling.clientKey));
      expect(response.json().meta.total).toBe(1);
      expect(ids(response)).toEqual([mine.json().data.checkpoint.id]);
      expect((await list(job.id)).statusCode).toBe(404);
    });
  });
});
