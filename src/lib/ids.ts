import { createId, isCuid } from "@paralleldrive/cuid2";

export const newId = (): string => createId();
export { isCuid };
