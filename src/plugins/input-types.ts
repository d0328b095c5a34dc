import fp from "fastify-plugin";
import type { FastifyRequest } from "fastify";
import { acceptsNumericString } from "../schemas/common.ts";

// What JSON itself takes as a number: no whitespace, hex, `Infinity`, leading `+` or leading zeros.
const JSON_NUMBER = /^-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?$/;

interface PropertySchema {
  type?: string;
  items?: PropertySchema;
  [acceptsNumericString]?: true;
}

function numberOf(text: string): number | undefined {
  if (!JSON_NUMBER.test(text)) return undefined;
  const number = Number(text);
  return Number.isFinite(number) ? number : undefined;
}

/** A text value (query string, form field) as the type its schema declares; left as it is when it is not one (the validator answers 422). */
function fromText(schema: PropertySchema, value: unknown): unknown {
  if (schema.type === "array" && schema.items) return (Array.isArray(value) ? value : [value]).map((item) => fromText(schema.items!, item));
  if (typeof value !== "string") return value;
  if (schema.type === "integer" || schema.type === "number") return numberOf(value) ?? value;
  if (schema.type === "boolean") return value === "true" ? true : value === "false" ? false : value;
  return value;
}

/**
 * Converts, in place, the fields of `input` whose schema is not text: from text (`text`: query strings
 * and form fields, which can only be text), or only the numeric strings a JSON body may send.
 */
function convertFields(input: unknown, schema: unknown, text: boolean): void {
  const properties = (schema as { properties?: Record<string, PropertySchema> } | undefined)?.properties;
  if (!properties || input === null || typeof input !== "object" || Array.isArray(input)) return;
  const values = input as Record<string, unknown>;
  for (const [key, property] of Object.entries(properties)) {
    if (!Object.hasOwn(values, key)) continue;
    if (text) values[key] = fromText(property, values[key]);
    else if (property[acceptsNumericString] && typeof values[key] === "string") values[key] = numberOf(values[key]) ?? values[key];
  }
}

const isForm = (request: FastifyRequest) => request.headers["content-type"]?.toLowerCase().startsWith("multipart/") === true;

/**
 * Strict types (the validator does not coerce): a JSON `query: 42`, `waitMs: null` or `status: ["processing"]`
 * is a 422, not `"42"`, `0` or `"processing"`. Query strings and multipart form fields are text by nature:
 * their numbers (in JSON's own syntax: `0x1` and `" 0.5"` are not numbers) and booleans (`true`, `false`)
 * become typed values here, before validation; so do the numeric strings the contract allows in JSON.
 */
export const inputTypesPlugin = fp(
  async (app) => {
    app.addHook("preValidation", async (request) => {
      const schema = request.routeOptions.schema;
      if (!schema) return;
      convertFields(request.query, schema.querystring, true);
      convertFields(request.body, schema.body, isForm(request));
    });
  },
  { name: "input-types", fastify: "5.x" },
);
