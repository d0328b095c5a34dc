import type { Model, Provider } from "../schemas/common.ts";

export { providers, type Provider } from "../schemas/common.ts";

const modelPrefixes: Array<[Provider, (model: string) => boolean]> = [
  ["anthropic", (model) => model.startsWith("claude-")],
  ["google", (model) => model.startsWith("gemini-")],
  ["deepseek", (model) => model.startsWith("deepseek-")],
  ["openai", (model) => model.startsWith("gpt-") || /^o\d/.test(model)],
];

/** The provider whose API key a model needs (perstack-semantics §5.2). */
export function providerOf(model: Model | string): Provider {
  const match = modelPrefixes.find(([, matches]) => matches(model));
  if (!match) throw new Error(`unknown model ${model}`);
  return match[0];
}

export const defaultModel: Model = "claude-sonnet-4-5";
