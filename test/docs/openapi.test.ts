import SwaggerParser from "@apidevtools/swagger-parser";
// Ajv comes with fast-json-stringify and swagger-parser; it checks the examples against the schemas as published.
import { Ajv2020 } from "ajv/dist/2020.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestApp, type TestApp } from "../helpers/app.ts";

type Media = { schema?: object; example?: unknown; examples?: Record<string, { value: unknown }> };
type Operation = {
  operationId?: string;
  requestBody?: { content: Record<string, Media> };
  responses: Record<string, { content?: Record<string, Media> }>;
};

const methods = ["get", "put", "post", "delete", "patch"] as const;

function operations(document: { paths: Record<string, Record<string, Operation>> }) {
  return Object.entries(document.paths).flatMap(([path, item]) =>
    methods.flatMap((method) => (item[method] ? [{ name: `${method.toUpperCase()} ${path}`, operation: item[method] }] : [])),
  );
}

/** Every media type of the operation's request body and responses, with a name for failure messages. */
function mediaOf(name: string, operation: Operation): Array<{ where: string; media: Media }> {
  const requests = Object.entries(operation.requestBody?.content ?? {}).map(([type, media]) => ({ where: `${name} body ${type}`, media }));
  const responses = Object.entries(operation.responses).flatMap(([status, response]) =>
    Object.entries(response.content ?? {}).map(([type, media]) => ({ where: `${name} ${status} ${type}`, media })),
  );
  return [...requests, ...responses];
}

const examplesOf = (media: Media): unknown[] =>
  media.example !== undefined ? [media.example] : Object.values(media.examples ?? {}).map((example) => example.value);

describe("the OpenAPI document", () => {
  let t: TestApp;
  let document: Record<string, any>;

  beforeAll(async () => {
    t = await startTestApp();
    document = (await t.app.inject({ method: "GET", url: "/openapi.json" })).json();
  });
  afterAll(async () => t.close());

  it("is a valid OpenAPI 3.1 document", async () => {
    expect(document.openapi).toBe("3.1.0");
    await expect(SwaggerParser.validate(structuredClone(document) as never)).resolves.toBeDefined();
  });

  it("has an example for every request body and every response with content, admin API and operations included", () => {
    const all = operations(document as never);
    expect(all.map((entry) => entry.name)).toEqual(
      expect.arrayContaining(["POST /api/studio/v1/expert_jobs", "POST /api/admin/v1/organizations", "GET /metrics", "GET /healthz"]),
    );
    const missing = all.flatMap(({ name, operation }) =>
      mediaOf(name, operation).flatMap(({ where, media }) => (examplesOf(media).length === 0 ? [where] : [])),
    );
    expect(missing).toEqual([]);
  });

  it("documents the start's Idempotent-Replayed response header, and the 200's body stays the job envelope", () => {
    const start = document.paths["/api/studio/v1/expert_jobs"].post;
    expect(start.responses["200"].headers["idempotent-replayed"].schema).toMatchObject({ const: "true" });
    expect(Object.keys(start.responses["200"].content["application/json"].schema.properties ?? {})).toEqual(["data"]);
  });

  it("has examples that match their schemas", async () => {
    const dereferenced = (await SwaggerParser.dereference(structuredClone(document) as never)) as never;
    const ajv = new Ajv2020({ strict: false, validateFormats: false, allErrors: true });
    const failures: string[] = [];
    for (const { name, operation } of operations(dereferenced)) {
      for (const { where, media } of mediaOf(name, operation)) {
        if (!media.schema) continue;
        const validate = ajv.compile(media.schema);
        for (const example of examplesOf(media)) {
          if (!validate(example)) failures.push(`${where}: ${ajv.errorsText(validate.errors)}`);
        }
      }
    }
    expect(failures).toEqual([]);
    // Not vacuous: a job envelope without its job is refused.
    const getJob = (dereferenced as { paths: Record<string, Record<string, Operation>> }).paths[
      "/api/studio/v1/expert_jobs/{expertJobId}"
    ]!;
    expect(ajv.validate(getJob.get!.responses["200"]!.content!["application/json"]!.schema!, { data: {} })).toBe(false);
  });

  it("is rendered at /docs", async () => {
    const page = await t.app.inject({ method: "GET", url: "/docs/" });
    expect(page.statusCode).toBe(200);
    expect(page.headers["content-type"]).toMatch(/^text\/html/);
  });
});
