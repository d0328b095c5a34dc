-- AlterTable
ALTER TABLE "checkpoint" ADD COLUMN     "conversation_hash" BYTEA;
