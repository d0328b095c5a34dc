import { randomBytes } from "node:crypto";
import type { HttpClient } from "./http.ts";
import type { Expert } from "./payloads.ts";

/**
 * API keys of one scope. The server limits requests (1,200 a minute) and open streams (100) per key, so
 * the bench spreads its load over keys like a fleet of runtimes and dashboards would, and never runs into
 * a limit: a key is retired after `maxUses` requests.
 */
export class KeyRing {
  #current: string | undefined;
  #uses = 0;

  constructor(
    /** Swapped when the bench restarts the server. */
    public http: HttpClient,
    private readonly adminToken: string,
    private readonly applicationId: string,
    private readonly scope: "client" | "runtime",
    private readonly maxUses = 1_000,
  ) {}

  async fresh(): Promise<string> {
    const response = await this.http.json("POST", `/api/admin/v1/applications/${this.applicationId}/api_keys`, this.adminToken, {
      scope: this.scope,
    });
    return response.data.apiKey.key as string;
  }

  async many(count: number): Promise<string[]> {
    return Promise.all(Array.from({ length: count }, () => this.fresh()));
  }

  /** A key with `uses` requests left in it. */
  async next(uses = 1): Promise<string> {
    if (!this.#current || this.#uses + uses > this.maxUses) {
      this.#current = await this.fresh();
      this.#uses = 0;
    }
    this.#uses += uses;
    return this.#current;
  }
}

export interface Tenant {
  organizationId: string;
  applicationId: string;
  clientKeys: KeyRing;
  runtimeKeys: KeyRing;
  expert: Expert & { id: string };
}

/** An organization with one application (and its anthropic key) and one expert, `@bench/agent@1.0.0` unless told. */
export async function seedTenant(
  http: HttpClient,
  adminToken: string,
  expertToRegister: { name: string; version: string } = { name: "@bench/agent", version: "1.0.0" },
): Promise<Tenant> {
  const admin = (method: string, url: string, body?: unknown) => http.json(method, `/api/admin/v1${url}`, adminToken, body);
  const { organization } = (await admin("POST", "/organizations", { name: `bench-${randomBytes(3).toString("hex")}` })).data;
  const { application } = (await admin("POST", `/organizations/${organization.id}/applications`, { name: "bench" })).data;
  const { expert } = (
    await admin("POST", `/organizations/${organization.id}/experts`, { ...expertToRegister, description: "Bench" })
  ).data;
  await admin("PUT", `/applications/${application.id}/provider_keys/anthropic`, { key: "sk-ant-bench" });
  return {
    organizationId: organization.id,
    applicationId: application.id,
    clientKeys: new KeyRing(http, adminToken, application.id, "client"),
    runtimeKeys: new KeyRing(http, adminToken, application.id, "runtime"),
    expert: { id: expert.id, key: expert.key, name: expert.name, version: expert.version },
  };
}

/** Starts `count` jobs of the tenant's expert (16 at a time). */
export async function startJobs(http: HttpClient, tenant: Tenant, count: number, options: { maxSteps?: number } = {}): Promise<string[]> {
  const ids: string[] = [];
  for (let index = 0; index < count; index += 16) {
    const size = Math.min(16, count - index);
    const key = await tenant.clientKeys.next(size);
    const batch = await Promise.all(
      Array.from({ length: size }, () =>
        http.json("POST", "/api/studio/v1/expert_jobs", key, {
          expertKey: tenant.expert.key,
          query: "Fix the failing test",
          ...(options.maxSteps !== undefined && { maxSteps: options.maxSteps }),
        }),
      ),
    );
    ids.push(...batch.map((response) => response.data.expertJob.id as string));
  }
  return ids;
}
