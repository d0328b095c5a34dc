-- CreateIndex
-- CONCURRENTLY: expert_job keeps taking writes while the index builds on a large table (rolling
-- upgrades); the statement is alone in this file, so it runs outside a transaction as it must.
CREATE INDEX CONCURRENTLY IF NOT EXISTS "expert_job_application_id_updated_at_idx" ON "expert_job"("application_id", "updated_at");
