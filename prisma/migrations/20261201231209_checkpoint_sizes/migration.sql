-- AlterTable
ALTER TABLE "checkpoint" ADD COLUMN     "detail_bytes" INTEGER NOT NULL DEFAULT 0,
ADD COLUMN     "messages_bytes" INTEGER NOT NULL DEFAULT 0;

-- Checkpoints stored before this migration: their sizes, from what is stored.
UPDATE "checkpoint" c SET
  "messages_bytes" = coalesce((
    SELECT sum(octet_length(m."body"::text) + 1) + 1
    FROM jsonb_array_elements(c."message_runs") AS r(run)
    JOIN "job_message" m ON m."expert_job_id" = c."expert_job_id"
      AND m."ordinal" BETWEEN (r.run->>0)::int AND (r.run->>1)::int
  ), 2),
  "detail_bytes" = octet_length(c."action"::text) + octet_length(c."new_messages"::text)
    + coalesce(octet_length(c."input_messages"::text), 0) + coalesce(octet_length(c."tool_call"::text), 0)
    + coalesce(octet_length(c."tool_result"::text), 0);
