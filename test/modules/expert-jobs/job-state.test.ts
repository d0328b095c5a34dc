import { describe, expect, it } from "vitest";
import { expertJobStatuses, type ExpertJobStatus } from "../../../src/modules/expert-jobs/expert-jobs.schemas.ts";
import {
  continuableStatuses,
  isStopped,
  statusAfterCancel,
  statusAfterLeaseExpiry,
  statusAfterReport,
} from "../../../src/modules/expert-jobs/job-state.ts";

describe("job state machine", () => {
  it("continues exactly the stopped statuses SPEC §7 lists", () => {
    expect([...continuableStatuses].sort()).toEqual(
      ["completed", "exceededMaxSteps", "failed", "requestDelegateResult", "requestInteractiveToolResult"].sort(),
    );
  });

  it("cancels per SPEC §4 item 10 and refuses finished jobs", () => {
    const table = Object.fromEntries(expertJobStatuses.map((status) => [status, statusAfterCancel(status)]));
    expect(table).toEqual({
      queued: "canceled",
      processing: "canceling",
      completed: undefined,
      requestInteractiveToolResult: "canceled",
      requestDelegateResult: "canceling",
      exceededMaxSteps: "canceled",
      failed: undefined,
      canceling: "canceling",
      canceled: "canceled",
      expired: undefined,
    });
  });

  it("never lets a runtime report queued, canceling or expired, nor leave a stopped status", () => {
    for (const from of expertJobStatuses) {
      for (const reported of ["queued", "canceling", "expired"] as const) expect(statusAfterReport(from, reported)).toBeUndefined();
      if (isStopped(from)) {
        for (const reported of expertJobStatuses.filter((status) => status !== from)) {
          expect(statusAfterReport(from, reported), `${from} → ${reported}`).toBeUndefined();
        }
      }
    }
  });

  it("treats a processing heartbeat on a canceling job as a heartbeat, not an un-cancel", () => {
    expect(statusAfterReport("canceling", "processing")).toBe("canceling");
    expect(statusAfterReport("canceling", "canceled")).toBe("canceled");
    expect(statusAfterReport("processing", "canceled")).toBeUndefined();
  });

  it("accepts a repeated report of the status a checkpoint already set", () => {
    const stopped: ExpertJobStatus[] = ["completed", "requestInteractiveToolResult", "exceededMaxSteps", "failed", "canceled"];
    for (const status of stopped) expect(statusAfterReport(status, status)).toBe(status);
  });

  it("requeues an expired lease until maxRetries, then fails it; a canceling job becomes canceled", () => {
    expect(statusAfterLeaseExpiry("processing", 0, 2)).toBe("queued");
    expect(statusAfterLeaseExpiry("processing", 1, 2)).toBe("queued");
    expect(statusAfterLeaseExpiry("processing", 2, 2)).toBe("failed");
    expect(statusAfterLeaseExpiry("processing", 0, 0)).toBe("failed");
    expect(statusAfterLeaseExpiry("requestDelegateResult", 0, 5)).toBe("queued");
    expect(statusAfterLeaseExpiry("canceling", 9, 0)).toBe("canceled");
  });
});
