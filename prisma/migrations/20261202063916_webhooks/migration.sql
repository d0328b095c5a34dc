-- CreateEnum
CREATE TYPE "webhook_delivery_status" AS ENUM ('pending', 'succeeded', 'failed');

-- CreateTable
CREATE TABLE "webhook_endpoint" (
    "id" TEXT NOT NULL,
    "application_id" TEXT NOT NULL,
    "url" TEXT NOT NULL,
    "event_types" TEXT[],
    "ciphertext" BYTEA NOT NULL,
    "iv" BYTEA NOT NULL,
    "auth_tag" BYTEA NOT NULL,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "webhook_endpoint_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "webhook_message" (
    "id" TEXT NOT NULL,
    "application_id" TEXT NOT NULL,
    "expert_job_id" TEXT NOT NULL,
    "type" TEXT NOT NULL,
    "job_row" JSONB NOT NULL,
    "payload" TEXT,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "webhook_message_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "webhook_delivery" (
    "id" TEXT NOT NULL,
    "message_id" TEXT NOT NULL,
    "endpoint_id" TEXT NOT NULL,
    "status" "webhook_delivery_status" NOT NULL DEFAULT 'pending',
    "attempts" INTEGER NOT NULL DEFAULT 0,
    "next_attempt_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "window_started_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "last_attempt_at" TIMESTAMPTZ(3),
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "webhook_delivery_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "webhook_attempt" (
    "delivery_id" TEXT NOT NULL,
    "number" INTEGER NOT NULL,
    "started_at" TIMESTAMPTZ(3) NOT NULL,
    "duration_ms" INTEGER NOT NULL,
    "response_status" INTEGER,
    "error" TEXT,
    "response_body" TEXT,

    CONSTRAINT "webhook_attempt_pkey" PRIMARY KEY ("delivery_id","number")
);

-- CreateIndex
CREATE INDEX "webhook_endpoint_application_id_created_at_idx" ON "webhook_endpoint"("application_id", "created_at");

-- CreateIndex
CREATE INDEX "webhook_message_application_id_created_at_idx" ON "webhook_message"("application_id", "created_at");

-- CreateIndex
CREATE INDEX "webhook_message_expert_job_id_idx" ON "webhook_message"("expert_job_id");

-- CreateIndex
CREATE INDEX "webhook_delivery_status_next_attempt_at_idx" ON "webhook_delivery"("status", "next_attempt_at");

-- CreateIndex
CREATE INDEX "webhook_delivery_endpoint_id_created_at_idx" ON "webhook_delivery"("endpoint_id", "created_at");

-- CreateIndex
CREATE UNIQUE INDEX "webhook_delivery_message_id_endpoint_id_key" ON "webhook_delivery"("message_id", "endpoint_id");

-- AddForeignKey
ALTER TABLE "webhook_endpoint" ADD CONSTRAINT "webhook_endpoint_application_id_fkey" FOREIGN KEY ("application_id") REFERENCES "application"("id") ON DELETE RESTRICT ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "webhook_message" ADD CONSTRAINT "webhook_message_expert_job_id_fkey" FOREIGN KEY ("expert_job_id") REFERENCES "expert_job"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "webhook_delivery" ADD CONSTRAINT "webhook_delivery_message_id_fkey" FOREIGN KEY ("message_id") REFERENCES "webhook_message"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "webhook_delivery" ADD CONSTRAINT "webhook_delivery_endpoint_id_fkey" FOREIGN KEY ("endpoint_id") REFERENCES "webhook_endpoint"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "webhook_attempt" ADD CONSTRAINT "webhook_attempt_delivery_id_fkey" FOREIGN KEY ("delivery_id") REFERENCES "webhook_delivery"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- The outbox: a job's status change that makes an event writes it in the same statement, so in the same
-- transaction (checkpoint posts, cancels, runtime status reports, the sweeper's expiries and lease
-- take-backs alike): an event exists if and only if its status change committed. Nothing is written for
-- an application without an endpoint that wants the event. The job's row is kept as the change left it;
-- the delivery worker renders it as GET does.
CREATE FUNCTION webhook_outbox_job_status() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  new_event_type text := 'expert_job.' || NEW.status::text;
  new_message_id text;
BEGIN
  IF NOT EXISTS (
    SELECT FROM webhook_endpoint WHERE application_id = NEW.application_id AND new_event_type = ANY (event_types)
  ) THEN
    RETURN NULL;
  END IF;
  new_message_id := 'msg_' || replace(gen_random_uuid()::text, '-', '');
  INSERT INTO webhook_message (id, application_id, expert_job_id, type, job_row)
    VALUES (new_message_id, NEW.application_id, NEW.id, new_event_type, to_jsonb(NEW));
  INSERT INTO webhook_delivery (id, message_id, endpoint_id)
    SELECT substr(replace(gen_random_uuid()::text, '-', ''), 1, 24), new_message_id, id
    FROM webhook_endpoint WHERE application_id = NEW.application_id AND new_event_type = ANY (event_types);
  RETURN NULL;
END
$$;

CREATE TRIGGER expert_job_webhook_outbox
  AFTER UPDATE OF status ON expert_job
  FOR EACH ROW
  WHEN (OLD.status IS DISTINCT FROM NEW.status AND NEW.status IN
    ('completed', 'failed', 'canceled', 'expired', 'requestInteractiveToolResult', 'exceededMaxSteps'))
  EXECUTE FUNCTION webhook_outbox_job_status();
