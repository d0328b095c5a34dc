import type { PrismaClient } from "../../generated/prisma/client.ts";
import type { ExpertDigest } from "../../schemas/common.ts";
import { newId } from "../../lib/ids.ts";
import semver from "semver";
import { RequestValidationError } from "../../errors.ts";
import type { Sql } from "../../db/sql.ts";
import { findExpertByKey, readExperts } from "./experts.sql.ts";

export interface ExpertKeyParts {
  name: string;
  version?: string;
  tag?: string;
}

/** Exactly a semver version (`semver.valid` also takes a leading `v` or spaces, and drops build metadata). */
const isVersion = (text: string): boolean => semver.valid(text) === text.split("+")[0];

const NAME_PATTERN = /^(@[a-z0-9][a-z0-9_-]*\/)?[a-z0-9][a-z0-9_-]*$/;
const TAG_PATTERN = /^[a-z0-9][a-z0-9_.-]*$/;

/** `name`, `name@1.2.3`, `name@tag`; scoped names (`@org/name`) start with their own `@`. */
export function parseExpertKey(key: string): ExpertKeyParts | undefined {
  const at = key.indexOf("@", key.startsWith("@") ? 1 : 0);
  const name = at === -1 ? key : key.slice(0, at);
  const suffix = at === -1 ? undefined : key.slice(at + 1);
  if (!NAME_PATTERN.test(name)) return undefined;
  if (suffix === undefined) return { name, tag: "latest" };
  if (isVersion(suffix)) return { name, version: suffix };
  return TAG_PATTERN.test(suffix) ? { name, tag: suffix } : undefined;
}

// Two-key advisory locks (class, hash of organization/name) live apart from the one-key bootstrap lock.
const EXPERT_REGISTRATION_LOCK = 1_001;

const expertWithOwner = {
  include: { organization: { select: { id: true, name: true, createdAt: true } } },
} as const;

export type ExpertWithOwner = {
  id: string;
  name: string;
  version: string;
  description: string;
  tags: string[];
  createdAt: Date;
  updatedAt: Date;
  organization: { id: string; name: string; createdAt: Date };
};

export function toExpertDigest(expert: ExpertWithOwner): ExpertDigest {
  return {
    type: "expertDigest",
    id: expert.id,
    key: `${expert.name}@${expert.version}`,
    name: expert.name,
    minRuntimeVersion: "v1.0",
    description: expert.description,
    owner: {
      name: expert.organization.name,
      organizationId: expert.organization.id,
      createdAt: expert.organization.createdAt.toISOString(),
    },
    createdAt: expert.createdAt.toISOString(),
    updatedAt: expert.updatedAt.toISOString(),
    version: expert.version,
    tags: expert.tags,
  };
}

export interface RegisterExpertInput {
  name: string;
  version: string;
  description: string;
  tags?: string[];
}

export class ExpertsService {
  constructor(
    private readonly prisma: PrismaClient,
    private readonly sql: Sql,
  ) {}

  /** Resolves an expert key within an organization; undefined when nothing matches. */
  async resolve(organizationId: string, key: string): Promise<ExpertDigest | undefined> {
    const parts = parseExpertKey(key);
    if (!parts) return undefined;
    const expert = await findExpertByKey(this.sql, organizationId, parts);
    return expert ? toExpertDigest(expert) : undefined;
  }

  async digestsById(ids: Iterable<string>): Promise<Map<string, ExpertDigest>> {
    const experts = await readExperts(this.sql, [...new Set(ids)]);
    return new Map(experts.map((expert) => [expert.id, toExpertDigest(expert)]));
  }

  /**
   * Registers a version. Explicit tags move to it from the expert's other versions; without tags it
   * takes `latest` when it is the highest semver version of the expert.
   */
  async register(organizationId: string, input: RegisterExpertInput): Promise<ExpertDigest> {
    // The schema checks the shape; semver also bounds each number (as npm does), so precedence is exact.
    if (!isVersion(input.version)) {
      throw new RequestValidationError([{ path: "/version", message: "must be a semver version with numbers up to 2^53 - 1" }]);
    }
    return this.prisma.$transaction(async (tx) => {
      // Concurrent registrations of one expert would each see the other's version missing and both take `latest`.
      await tx.$executeRaw`SELECT pg_advisory_xact_lock(${EXPERT_REGISTRATION_LOCK}::int, hashtext(${`${organizationId}/${input.name}`}))`;
      const siblings = await tx.expert.findMany({
        where: { organizationId, name: input.name },
        select: { id: true, version: true, tags: true },
      });
      const isNewest = siblings.every((sibling) => semver.gt(input.version, sibling.version));
      const tags = [...new Set(input.tags ?? (isNewest ? ["latest"] : []))];
      for (const sibling of siblings) {
        const kept = sibling.tags.filter((tag) => !tags.includes(tag));
        if (kept.length !== sibling.tags.length) await tx.expert.update({ where: { id: sibling.id }, data: { tags: kept } });
      }
      const expert = await tx.expert.create({
        data: { id: newId(), organizationId, name: input.name, version: input.version, description: input.description, tags },
        ...expertWithOwner,
      });
      return toExpertDigest(expert);
    });
  }
}
