-- AlterTable
ALTER TABLE "expert_job" ADD COLUMN     "lease_token" TEXT;
