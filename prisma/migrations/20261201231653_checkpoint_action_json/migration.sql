-- AlterTable
ALTER TABLE "checkpoint" ALTER COLUMN "action" SET DATA TYPE JSON;
