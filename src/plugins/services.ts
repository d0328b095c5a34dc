import fp from "fastify-plugin";
import { SecretBox } from "../lib/secrets.ts";
import { AdminService } from "../modules/admin/admin.service.ts";
import { CheckpointsService } from "../modules/checkpoints/checkpoints.service.ts";
import { ExpertJobsService } from "../modules/expert-jobs/expert-jobs.service.ts";
import { JobRetentionService, type RetentionBatches } from "../modules/expert-jobs/job-retention.service.ts";
import { WatchMarks } from "../modules/expert-jobs/watch-marks.ts";
import { ExpertsService } from "../modules/experts/experts.service.ts";
import { ProviderKeysService } from "../modules/provider-keys/provider-keys.service.ts";
import { verifySecretsKey } from "../modules/provider-keys/secrets-key-check.ts";
import type { AddressPolicy } from "../modules/webhooks/webhook-address.ts";
import { WebhooksService } from "../modules/webhooks/webhooks.service.ts";

declare module "fastify" {
  interface FastifyInstance {
    experts: ExpertsService;
    providerKeys: ProviderKeysService;
    expertJobs: ExpertJobsService;
    checkpoints: CheckpointsService;
    admin: AdminService;
    jobRetention: JobRetentionService;
    webhooks: WebhooksService;
    watchMarks: WatchMarks;
  }
}

export interface ServicesOptions {
  secretsKey: Buffer;
  leaseMs: number;
  retentionBatches?: RetentionBatches;
  webhookPolicy: AddressPolicy;
  /** How long a job's watch mark holds without renewal (src/modules/expert-jobs/watch-marks.ts). */
  watchLeaseMs: number;
}

export const servicesPlugin = fp<ServicesOptions>(
  async (app, { secretsKey, leaseMs, retentionBatches, webhookPolicy, watchLeaseMs }) => {
    const secrets = new SecretBox(secretsKey);
    await verifySecretsKey(app.prisma, secrets);
    const experts = new ExpertsService(app.prisma, app.sql);
    const providerKeys = new ProviderKeysService(app.prisma, secrets);
    app.decorate("experts", experts);
    app.decorate("providerKeys", providerKeys);
    app.decorate("expertJobs", new ExpertJobsService(app.prisma, experts, providerKeys, app.notifier));
    app.decorate("checkpoints", new CheckpointsService(app.prisma, experts, leaseMs, app.sql, app.notifier));
    app.decorate("admin", new AdminService(app.prisma, experts, providerKeys, app.notifier));
    app.decorate("jobRetention", new JobRetentionService(app.prisma, retentionBatches));
    app.decorate("webhooks", new WebhooksService(app.prisma, secrets, webhookPolicy));
    app.decorate("watchMarks", new WatchMarks(app.sql, watchLeaseMs));
  },
  { name: "services", dependencies: ["database", "notifications"], fastify: "5.x" },
);
