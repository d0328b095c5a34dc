import { Type, type Static } from "@sinclair/typebox";
import { ExpertDigestSchema, IdSchema, PageMetaSchema, PagingQuerySchema, TimestampSchema, UsageSchema } from "./common.ts";
import { checkpointExample, pageMetaExample, postCheckpointBodyExample } from "./examples.ts";
import { CheckpointActionSchema } from "./checkpoint-action.ts";

export const checkpointStatuses = [
  "init",
  "proceeding",
  "completed",
  "stoppedByInteractiveTool",
  "stoppedByDelegate",
  "stoppedByExceededMaxSteps",
  "stoppedByError",
] as const;

export const CheckpointStatusSchema = Type.Union(checkpointStatuses.map((status) => Type.Literal(status)));

const Name = Type.String({ minLength: 1, maxLength: 255 });
const NonNegative = Type.Number({ minimum: 0 });
const Messages = Type.Array(Type.Unknown());
// Epoch milliseconds up to 9999-12-31T23:59:59.999Z: later timestamps are stored but then cannot be read back.
const EpochMs = Type.Number({ minimum: 0, maximum: 253_402_300_799_999 });

const PostedUsageSchema = Type.Object({
  inputTokens: NonNegative,
  outputTokens: NonNegative,
  reasoningTokens: NonNegative,
  totalTokens: NonNegative,
  cachedInputTokens: NonNegative,
});

const PostedExpertSchema = Type.Object({ key: Type.String({ minLength: 1, maxLength: 511 }), name: Name, version: Name });

const ToolCallSchema = Type.Object({
  id: Type.String(),
  skillName: Type.String(),
  toolName: Type.String(),
  args: Type.Object({}, { additionalProperties: true }),
});

const ToolResultSchema = Type.Object({
  id: Type.String(),
  skillName: Type.String(),
  toolName: Type.String(),
  result: Type.Array(Type.Unknown()),
});

export const PostCheckpointBodySchema = Type.Object(
  {
    checkpoint: Type.Object({
      id: Type.Optional(IdSchema),
      runId: Type.Optional(IdSchema),
      status: CheckpointStatusSchema,
      stepNumber: Type.Integer({ minimum: 0, maximum: 2_147_483_647 }),
      messages: Messages,
      expert: PostedExpertSchema,
      delegateTo: Type.Optional(Type.Object({ expert: PostedExpertSchema, toolCallId: Name, toolName: Name, query: Type.String() })),
      delegatedBy: Type.Optional(
        Type.Object({
          expert: PostedExpertSchema,
          toolCallId: Name,
          toolName: Name,
          checkpointId: Type.String({ minLength: 1, maxLength: 255 }),
        }),
      ),
      usage: PostedUsageSchema,
      contextWindow: Type.Optional(NonNegative),
      contextWindowUsage: Type.Optional(NonNegative),
    }),
    step: Type.Object({
      stepNumber: Type.Integer({ minimum: 0, maximum: 2_147_483_647 }),
      inputMessages: Type.Optional(Messages),
      newMessages: Messages,
      toolCall: Type.Optional(ToolCallSchema),
      toolResult: Type.Optional(ToolResultSchema),
      usage: PostedUsageSchema,
      startedAt: EpochMs,
      finishedAt: Type.Optional(EpochMs),
    }),
  },
  { examples: [postCheckpointBodyExample] },
);
export type PostCheckpointBody = Static<typeof PostCheckpointBodySchema>;

const DelegationSchema = {
  expert: ExpertDigestSchema,
  toolCallId: Type.String(),
  toolName: Type.String(),
};

export const CheckpointSchema = Type.Object({
  type: Type.Literal("checkpoint"),
  id: IdSchema,
  action: CheckpointActionSchema,
  runId: IdSchema,
  expertJobId: IdSchema,
  stepNumber: Type.Number(),
  status: CheckpointStatusSchema,
  expert: ExpertDigestSchema,
  skillName: Type.Optional(Type.String()),
  toolName: Type.Optional(Type.String()),
  delegateTo: Type.Optional(Type.Object(DelegationSchema)),
  delegatedBy: Type.Optional(Type.Object({ ...DelegationSchema, checkpointId: Type.String() })),
  inputMessages: Type.Optional(Messages),
  messages: Type.Optional(Type.Array(Type.Unknown(), { description: "The whole conversation; left out with exclude=messages" })),
  newMessages: Type.Optional(Type.Array(Type.Unknown(), { description: "The step's new messages; left out with exclude=newMessages" })),
  toolCall: Type.Optional(ToolCallSchema),
  toolResult: Type.Optional(ToolResultSchema),
  usage: UsageSchema,
  contextWindow: Type.Number({ description: "Always present; 0 when the runtime did not report it" }),
  contextWindowUsage: Type.Number({ description: "Always present; 0 when the runtime did not report it" }),
  startedAt: TimestampSchema,
  finishedAt: Type.Optional(TimestampSchema),
  sequence: Type.Integer({
    minimum: 1,
    description:
      "The checkpoint's number in its job (1, 2, …, in the order the server stored them): the stream's event id, so a " +
      "client can list with sort=sequence and then stream with Last-Event-ID from where the list ended",
  }),
  createdAt: Type.String({ format: "date-time", description: "When the server stored the checkpoint" }),
});
export type Checkpoint = Static<typeof CheckpointSchema>;

export const CheckpointEnvelopeSchema = Type.Object(
  { data: Type.Object({ checkpoint: CheckpointSchema }) },
  { examples: [{ data: { checkpoint: checkpointExample } }] },
);

export const CheckpointParamsSchema = Type.Object({ expertJobId: IdSchema, checkpointId: IdSchema });

/**
 * The heavy parts of a checkpoint a read may leave out. A long job carries its whole conversation in every
 * checkpoint, and a step that reads a file carries the file in its new messages, its tool result and its
 * action: a timeline needs none of them.
 */
export const exclusions = ["messages", "newMessages", "toolCall", "toolResult", "actionContent"] as const;
export type Exclusion = (typeof exclusions)[number];

export const ExcludeSchema = Type.Optional(
  Type.String({
    pattern: `^(${exclusions.join("|")})(,(${exclusions.join("|")}))*$`,
    description:
      "Parts to leave out, comma-separated: `messages` (`messages` and `inputMessages`: the whole " +
      "conversation), `newMessages`, `toolCall`, `toolResult`, `actionContent` (the action's large fields: `content`, `text`, " +
      "`newText`, `oldText`, `result`, `results`, `items`, and `args` except an interactive tool's question). Without it, " +
      "checkpoints are answered whole.",
    examples: ["messages", "messages,newMessages,toolCall,toolResult,actionContent"],
  }),
);

export const GetCheckpointQuerySchema = Type.Object({ exclude: ExcludeSchema });

export const ListCheckpointsQuerySchema = Type.Object({
  ...PagingQuerySchema,
  sort: Type.Union([Type.Literal("createdAt"), Type.Literal("updatedAt"), Type.Literal("sequence")], {
    default: "createdAt",
    description: "`sequence`: the order the server stored the checkpoints in (the stream's order)",
  }),
  exclude: ExcludeSchema,
});
export type ListCheckpointsQuery = Static<typeof ListCheckpointsQuerySchema>;

export const CheckpointListSchema = Type.Object(
  {
    data: Type.Object({ checkpoints: Type.Array(CheckpointSchema) }),
    meta: PageMetaSchema,
  },
  { examples: [{ data: { checkpoints: [checkpointExample] }, meta: pageMetaExample }] },
);
