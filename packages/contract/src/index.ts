export * from "./common.ts";
export * from "./checkpoint-action.ts";
export * from "./checkpoints.ts";
export * from "./expert-jobs.ts";
export * from "./runtime.ts";
