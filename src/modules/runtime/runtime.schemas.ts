// The wire shapes are the API's contract (packages/contract), shared with the typed client.
export * from "#contract/runtime";
