import fastJson from "fast-json-stringify";
import { Type } from "@sinclair/typebox";
import { PageMetaSchema } from "../../schemas/common.ts";
import { CheckpointSchema, type Checkpoint } from "./checkpoints.schemas.ts";
import type { CheckpointReply } from "./checkpoints.service.ts";

type PageMeta = { total: number; take: number; skip: number };

export interface CheckpointSerializer {
  serialize(checkpoint: Checkpoint): string;
  /** The checkpoint with `messages` given as the JSON text of the conversation, spliced in as it is. */
  withMessagesJson(checkpoint: Checkpoint, messagesJson: string): string;
  /**
   * The checkpoint's JSON before and after its `messages` value (`before + messagesJson + after` is
   * `withMessagesJson`), so the conversation can be put in as bytes; undefined when splicing is off.
   */
  aroundMessages?: (checkpoint: Checkpoint) => [before: string, after: string];
  /** `{data:{checkpoint}}`, as `CheckpointEnvelopeSchema` serialises it. */
  envelope(reply: CheckpointReply): string;
  /** `{data:{checkpoints},meta}`, as `CheckpointListSchema` serialises it. */
  page(replies: CheckpointReply[], meta: PageMeta): string;
}

/**
 * A checkpoint's JSON, by its schema. A long job carries its whole conversation in every checkpoint, and
 * the server already holds that conversation as JSON text (stored message bodies, or the texts a post was
 * hashed from): splicing the text in instead of parsing and serialising the messages again saves ~0.4 ms
 * per 130 KB checkpoint on a post, and most of the time of a page with messages (bench/NOTES.md). The
 * tests check every answer against the schema's own serialisation, byte for byte.
 */
export function checkpointSerializer(): CheckpointSerializer {
  const serialize = fastJson(CheckpointSchema) as (checkpoint: Checkpoint) => string;
  const serializeMeta = fastJson(PageMetaSchema) as (meta: PageMeta) => string;
  const aroundMessages = messagesAround(serialize);
  const withMessagesJson = messagesSplicer(serialize, aroundMessages);
  const text = ({ checkpoint, messagesJson }: CheckpointReply) =>
    messagesJson === undefined ? serialize(checkpoint) : withMessagesJson(checkpoint, messagesJson);
  return {
    serialize,
    withMessagesJson,
    ...(aroundMessages && { aroundMessages }),
    envelope: (reply) => `{"data":{"checkpoint":${text(reply)}}}`,
    page: (replies, meta) => `{"data":{"checkpoints":[${replies.map(text).join(",")}]},"meta":${serializeMeta(meta)}}`,
  };
}

/**
 * Serialises a checkpoint with its conversation given as JSON text: the properties written before
 * `messages` and those after it are serialised apart and the text goes in between, so the result is what
 * serialising the parsed conversation would give, without parsing and serialising it again (a long job
 * streams its whole conversation in every event). Without a splice (see `messagesAround`), messages
 * are parsed and serialised as before.
 */
export function messagesSplicer(
  serialize: (checkpoint: Checkpoint) => string,
  around = messagesAround(serialize),
): (checkpoint: Checkpoint, messagesJson: string) => string {
  if (!around) return (checkpoint, messagesJson) => serialize({ ...checkpoint, messages: JSON.parse(messagesJson) });
  return (checkpoint, messagesJson) => {
    const [before, after] = around(checkpoint);
    return before + messagesJson + after;
  };
}

/**
 * The checkpoint's JSON before and after its `messages` value. The key order is the serializer's own (it
 * writes required properties first), read from a probe; if splicing ever disagrees with the serializer on
 * that probe, there is no splice (undefined).
 */
export function messagesAround(serialize: (checkpoint: Checkpoint) => string): ((checkpoint: Checkpoint) => [string, string]) | undefined {
  const digest = {
    type: "expertDigest",
    id: "e",
    key: "k",
    name: "n",
    minRuntimeVersion: "v1.0",
    description: "d",
    owner: { name: "o", organizationId: "o", createdAt: "t" },
    createdAt: "t",
    updatedAt: "t",
    version: "1",
    tags: [],
  };
  const delegation = { expert: digest, toolCallId: "c", toolName: "t" };
  const probe = {
    type: "checkpoint",
    id: "i",
    action: { type: "init" },
    runId: "r",
    expertJobId: "j",
    stepNumber: 1,
    status: "init",
    expert: digest,
    skillName: "s",
    toolName: "t",
    delegateTo: delegation,
    delegatedBy: { ...delegation, checkpointId: "c" },
    inputMessages: [1],
    messages: [{ b: 1, a: [2] }, null],
    newMessages: [3],
    toolCall: { id: "c", skillName: "s", toolName: "t", args: {} },
    toolResult: { id: "c", skillName: "s", toolName: "t", result: [] },
    usage: { inputTokens: 1, outputTokens: 1, reasoningTokens: 1, totalTokens: 1, cachedInputTokens: 1 },
    contextWindow: 1,
    contextWindowUsage: 1,
    startedAt: "t",
    finishedAt: "t",
    sequence: 1,
    createdAt: "t",
  } as unknown as Checkpoint;
  try {
    const order = Object.keys(JSON.parse(serialize(probe)) as object);
    const at = order.indexOf("messages");
    if (at <= 0) return undefined;
    const part = (keys: string[]) =>
      fastJson(Type.Object(Object.fromEntries(keys.map((key) => [key, CheckpointSchema.properties[key as keyof Checkpoint]]))));
    const [head, tail] = [part(order.slice(0, at)), part(order.slice(at + 1))];
    const around = (checkpoint: Checkpoint): [string, string] => {
      const rest = tail(checkpoint);
      return [`${head(checkpoint).slice(0, -1)},"messages":`, rest === "{}" ? "}" : `,${rest.slice(1)}`];
    };
    const [before, after] = around(probe);
    return before + JSON.stringify(probe.messages) + after === serialize(probe) ? around : undefined;
  } catch {
    return undefined;
  }
}
