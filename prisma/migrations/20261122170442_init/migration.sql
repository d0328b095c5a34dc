-- CreateEnum
CREATE TYPE "api_key_scope" AS ENUM ('client', 'runtime');

-- CreateEnum
CREATE TYPE "expert_job_status" AS ENUM ('queued', 'processing', 'completed', 'requestInteractiveToolResult', 'requestDelegateResult', 'exceededMaxSteps', 'failed', 'canceling', 'canceled', 'expired');

-- CreateEnum
CREATE TYPE "checkpoint_status" AS ENUM ('init', 'proceeding', 'completed', 'stoppedByInteractiveTool', 'stoppedByDelegate', 'stoppedByExceededMaxSteps', 'stoppedByError');

-- CreateTable
CREATE TABLE "organization" (
    "id" TEXT NOT NULL,
    "name" TEXT NOT NULL,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "organization_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "application" (
    "id" TEXT NOT NULL,
    "organization_id" TEXT NOT NULL,
    "name" TEXT NOT NULL,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "application_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "api_key" (
    "id" TEXT NOT NULL,
    "application_id" TEXT NOT NULL,
    "scope" "api_key_scope" NOT NULL,
    "name" TEXT,
    "secret_hash" BYTEA NOT NULL,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "revoked_at" TIMESTAMPTZ(3),

    CONSTRAINT "api_key_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "expert" (
    "id" TEXT NOT NULL,
    "organization_id" TEXT NOT NULL,
    "name" TEXT NOT NULL,
    "version" TEXT NOT NULL,
    "description" TEXT NOT NULL,
    "tags" TEXT[],
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updated_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "expert_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "provider_key" (
    "application_id" TEXT NOT NULL,
    "provider" TEXT NOT NULL,
    "ciphertext" BYTEA NOT NULL,
    "iv" BYTEA NOT NULL,
    "auth_tag" BYTEA NOT NULL,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updated_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "provider_key_pkey" PRIMARY KEY ("application_id","provider")
);

-- CreateTable
CREATE TABLE "expert_job" (
    "id" TEXT NOT NULL,
    "organization_id" TEXT NOT NULL,
    "application_id" TEXT NOT NULL,
    "expert_id" TEXT NOT NULL,
    "expert_key" TEXT NOT NULL,
    "status" "expert_job_status" NOT NULL,
    "query" TEXT,
    "files" TEXT[],
    "interactive_tool_call_result" BOOLEAN,
    "model" TEXT NOT NULL,
    "temperature" DOUBLE PRECISION NOT NULL,
    "max_steps" INTEGER NOT NULL,
    "max_retries" INTEGER NOT NULL,
    "current_step" INTEGER NOT NULL DEFAULT 0,
    "total_steps" INTEGER NOT NULL DEFAULT 0,
    "total_duration" BIGINT NOT NULL DEFAULT 0,
    "usage" JSONB NOT NULL,
    "last_seq" INTEGER NOT NULL DEFAULT 0,
    "resume_from_checkpoint_id" TEXT,
    "retry_count" INTEGER NOT NULL DEFAULT 0,
    "lease_expires_at" TIMESTAMPTZ(3),
    "paused_at" TIMESTAMPTZ(3),
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updated_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "expert_job_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "job_message" (
    "expert_job_id" TEXT NOT NULL,
    "ordinal" INTEGER NOT NULL,
    "hash" BYTEA NOT NULL,
    "body" JSON NOT NULL,

    CONSTRAINT "job_message_pkey" PRIMARY KEY ("expert_job_id","ordinal")
);

-- CreateTable
CREATE TABLE "checkpoint" (
    "expert_job_id" TEXT NOT NULL,
    "id" TEXT NOT NULL,
    "seq" INTEGER NOT NULL,
    "run_id" TEXT NOT NULL,
    "step_number" INTEGER NOT NULL,
    "status" "checkpoint_status" NOT NULL,
    "expert_id" TEXT NOT NULL,
    "expert_key" TEXT NOT NULL,
    "action" JSONB NOT NULL,
    "skill_name" TEXT,
    "tool_name" TEXT,
    "delegate_to" JSONB,
    "delegated_by" JSONB,
    "message_runs" JSONB NOT NULL,
    "input_messages" JSON,
    "new_messages" JSON NOT NULL,
    "tool_call" JSON,
    "tool_result" JSON,
    "usage" JSONB NOT NULL,
    "context_window" DOUBLE PRECISION NOT NULL DEFAULT 0,
    "context_window_usage" DOUBLE PRECISION NOT NULL DEFAULT 0,
    "started_at" TIMESTAMPTZ(3) NOT NULL,
    "finished_at" TIMESTAMPTZ(3),
    "resumed_from_checkpoint_id" TEXT,
    "content_hash" BYTEA NOT NULL,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updated_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "checkpoint_pkey" PRIMARY KEY ("expert_job_id","id")
);

-- CreateIndex
CREATE UNIQUE INDEX "organization_name_key" ON "organization"("name");

-- CreateIndex
CREATE UNIQUE INDEX "application_organization_id_name_key" ON "application"("organization_id", "name");

-- CreateIndex
CREATE INDEX "api_key_application_id_idx" ON "api_key"("application_id");

-- CreateIndex
CREATE UNIQUE INDEX "expert_organization_id_name_version_key" ON "expert"("organization_id", "name", "version");

-- CreateIndex
CREATE INDEX "expert_job_application_id_created_at_idx" ON "expert_job"("application_id", "created_at");

-- CreateIndex
CREATE INDEX "expert_job_application_id_status_created_at_idx" ON "expert_job"("application_id", "status", "created_at");

-- CreateIndex
CREATE INDEX "expert_job_status_lease_expires_at_idx" ON "expert_job"("status", "lease_expires_at");

-- CreateIndex
CREATE INDEX "expert_job_status_paused_at_idx" ON "expert_job"("status", "paused_at");

-- CreateIndex
CREATE INDEX "job_message_expert_job_id_hash_idx" ON "job_message"("expert_job_id", "hash");

-- CreateIndex
CREATE INDEX "checkpoint_expert_job_id_created_at_step_number_seq_idx" ON "checkpoint"("expert_job_id", "created_at", "step_number", "seq");

-- CreateIndex
CREATE UNIQUE INDEX "checkpoint_expert_job_id_seq_key" ON "checkpoint"("expert_job_id", "seq");

-- AddForeignKey
ALTER TABLE "application" ADD CONSTRAINT "application_organization_id_fkey" FOREIGN KEY ("organization_id") REFERENCES "organization"("id") ON DELETE RESTRICT ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "api_key" ADD CONSTRAINT "api_key_application_id_fkey" FOREIGN KEY ("application_id") REFERENCES "application"("id") ON DELETE RESTRICT ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "expert" ADD CONSTRAINT "expert_organization_id_fkey" FOREIGN KEY ("organization_id") REFERENCES "organization"("id") ON DELETE RESTRICT ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "provider_key" ADD CONSTRAINT "provider_key_application_id_fkey" FOREIGN KEY ("application_id") REFERENCES "application"("id") ON DELETE RESTRICT ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "expert_job" ADD CONSTRAINT "expert_job_application_id_fkey" FOREIGN KEY ("application_id") REFERENCES "application"("id") ON DELETE RESTRICT ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "expert_job" ADD CONSTRAINT "expert_job_expert_id_fkey" FOREIGN KEY ("expert_id") REFERENCES "expert"("id") ON DELETE RESTRICT ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "job_message" ADD CONSTRAINT "job_message_expert_job_id_fkey" FOREIGN KEY ("expert_job_id") REFERENCES "expert_job"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "checkpoint" ADD CONSTRAINT "checkpoint_expert_job_id_fkey" FOREIGN KEY ("expert_job_id") REFERENCES "expert_job"("id") ON DELETE CASCADE ON UPDATE CASCADE;
