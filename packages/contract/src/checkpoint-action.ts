import { type Static, type TProperties, Type } from "@sinclair/typebox";
import { ExpertDigestSchema } from "./common.ts";

const LooseObject = Type.Object({}, { additionalProperties: true });
const UnknownArray = Type.Array(Type.Unknown());

function actionVariant<TType extends string, TFields extends TProperties>(type: TType, fields: TFields) {
  return Type.Object({ type: Type.Literal(type), error: Type.Optional(Type.String()), ...fields });
}

const PathOnlyFields = { path: Type.Optional(Type.String()) };
const BinaryFileFields = {
  path: Type.Optional(Type.String()),
  mimeType: Type.Optional(Type.String()),
  size: Type.Optional(Type.Number()),
};
const TextFileFields = { path: Type.Optional(Type.String()), text: Type.Optional(Type.String()) };

export const CheckpointActionSchema = Type.Union([
  actionVariant("init", {}),
  actionVariant("retry", { error: Type.String(), message: Type.String() }),
  actionVariant("error", { error: Type.String() }),
  actionVariant("attemptCompletion", { result: Type.Optional(Type.String({ description: "Left out with exclude=actionContent" })) }),
  actionVariant("think", { thought: Type.String() }),
  actionVariant("todo", {
    newTodos: UnknownArray,
    completedTodos: UnknownArray,
    todos: Type.Optional(UnknownArray),
  }),
  actionVariant("readImageFile", BinaryFileFields),
  actionVariant("readPdfFile", BinaryFileFields),
  actionVariant("readTextFile", {
    path: Type.Optional(Type.String()),
    content: Type.Optional(Type.String()),
    from: Type.Optional(Type.Number()),
    to: Type.Optional(Type.Number()),
  }),
  actionVariant("editTextFile", {
    path: Type.Optional(Type.String()),
    newText: Type.Optional(Type.String()),
    oldText: Type.Optional(Type.String()),
  }),
  actionVariant("appendTextFile", TextFileFields),
  actionVariant("writeTextFile", TextFileFields),
  actionVariant("deleteFile", PathOnlyFields),
  actionVariant("createDirectory", PathOnlyFields),
  actionVariant("moveFile", {
    source: Type.Optional(Type.String()),
    destination: Type.Optional(Type.String()),
  }),
  actionVariant("getFileInfo", {
    path: Type.Optional(Type.String()),
    exists: Type.Optional(Type.Boolean()),
    absolutePath: Type.Optional(Type.String()),
    name: Type.Optional(Type.String()),
    directory: Type.Optional(Type.String()),
    extension: Type.Optional(Type.String()),
    mimeType: Type.Optional(Type.String()),
    size: Type.Optional(Type.Number()),
    sizeFormatted: Type.Optional(Type.String()),
    created: Type.Optional(Type.String()),
    modified: Type.Optional(Type.String()),
    accessed: Type.Optional(Type.String()),
    permissions: Type.Optional(LooseObject),
  }),
  actionVariant("listDirectory", {
    path: Type.Optional(Type.String()),
    items: Type.Optional(UnknownArray),
  }),
  actionVariant("testUrl", { results: Type.Optional(UnknownArray) }),
  actionVariant("delegate", { delegateTo: ExpertDigestSchema, query: Type.String() }),
  actionVariant("interactiveTool", {
    skillName: Type.String(),
    toolName: Type.String(),
    args: LooseObject,
  }),
  actionVariant("generalTool", {
    skillName: Type.String(),
    toolName: Type.String(),
    args: Type.Optional(Type.Object({}, { additionalProperties: true, description: "Left out with exclude=actionContent" })),
    result: Type.Optional(Type.Array(Type.Unknown(), { description: "Left out with exclude=actionContent" })),
  }),
]);

export type CheckpointAction = Static<typeof CheckpointActionSchema>;
