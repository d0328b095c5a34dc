import { iso, type Sql } from "../../db/sql.ts";
import type { ExpertKeyParts, ExpertWithOwner } from "./experts.service.ts";

/*
 * Expert reads on the hot paths (every posted checkpoint resolves its expert keys; every stream frame
 * shows expert digests). Prisma's `include` of the owner organization takes two queries; these take one.
 */

/** The shape `toExpertDigest` takes. */
export type ExpertRecord = ExpertWithOwner;

/** An expert with its owner organization as one JSON object (ISO timestamps), for `parseExperts`. */
export const expertJson = `json_build_object('id', e.id, 'name', e.name, 'version', e.version, 'description', e.description, 'tags', e.tags,
  'createdAt', ${iso("e.created_at")}, 'updatedAt', ${iso("e.updated_at")},
  'organization', json_build_object('id', o.id, 'name', o.name, 'createdAt', ${iso("o.created_at")}))`;

export function parseExperts(json: string | null): ExpertRecord[] {
  const experts = JSON.parse(json ?? "[]") as Array<
    Omit<ExpertRecord, "createdAt" | "updatedAt" | "organization"> & {
      createdAt: string;
      updatedAt: string;
      organization: { id: string; name: string; createdAt: string };
    }
  >;
  return experts.map((expert) => ({
    ...expert,
    createdAt: new Date(expert.createdAt),
    updatedAt: new Date(expert.updatedAt),
    organization: { ...expert.organization, createdAt: new Date(expert.organization.createdAt) },
  }));
}

/** Experts with their owner organization, by id. */
export async function readExperts(sql: Sql, ids: string[]): Promise<ExpertRecord[]> {
  if (ids.length === 0) return [];
  const [row] = await sql.query<{ experts: string | null }>(
    "experts_by_id",
    `SELECT json_agg(${expertJson})::text AS experts FROM expert e JOIN organization o ON o.id = e.organization_id WHERE e.id = ANY ($1::text[])`,
    [ids],
  );
  return parseExperts(row?.experts ?? null);
}

/** The organization's expert a key names: that exact version, or the newest version carrying the tag. */
export async function findExpertByKey(sql: Sql, organizationId: string, parts: ExpertKeyParts): Promise<ExpertRecord | undefined> {
  const [name, selector] = parts.version === undefined ? ["expert_by_tag", "$3 = ANY (tags)"] : ["expert_by_version", "version = $3"];
  const [row] = await sql.query<{ experts: string | null }>(
    name,
    `SELECT json_agg(${expertJson})::text AS experts FROM (
      SELECT * FROM expert WHERE organization_id = $1 AND name = $2 AND ${selector}
      ORDER BY created_at DESC LIMIT 1
    ) AS e JOIN organization o ON o.id = e.organization_id`,
    [organizationId, parts.name, parts.version ?? parts.tag],
  );
  return parseExperts(row?.experts ?? null)[0];
}
