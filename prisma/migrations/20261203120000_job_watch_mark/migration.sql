-- AlterTable
-- A nullable column without a default: no table rewrite, so expert_job keeps taking writes (rolling upgrades).
ALTER TABLE "expert_job" ADD COLUMN "watched_until" TIMESTAMPTZ(3);
