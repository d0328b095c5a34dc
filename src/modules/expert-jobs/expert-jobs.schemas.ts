// The wire shapes are the API's contract (packages/contract), shared with the typed client.
export * from "#contract/expert-jobs";

/** `files` as sent (a string or strings) as the list the job keeps. */
export const fileList = (files: string | string[] | undefined): string[] =>
  files === undefined ? [] : Array.isArray(files) ? files : [files];
