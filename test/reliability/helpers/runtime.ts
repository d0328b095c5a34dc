import { createId } from "@paralleldrive/cuid2";
import { checkpointBody, expertMessage, textPart, toolCallPart, toolMessage, userMessage, type Tenant } from "../../helpers/fixtures.ts";

/**
 * The bodies a runtime posts for one job: `steps` checkpoints with fixed ids (so a retry is idempotent),
 * a conversation that grows by two messages a step, and `completed` last.
 */
export function jobCheckpoints(tenant: Tenant, steps: number, options: { padBytes?: number } = {}) {
  const messages: unknown[] = [userMessage("Start")];
  return Array.from({ length: steps }, (_, index) => {
    const stepNumber = index + 1;
    const last = stepNumber === steps;
    const call = { id: `call_${stepNumber}`, skillName: "search", toolName: "webSearch", args: { q: `q${stepNumber}` } };
    const pad = options.padBytes ? ` ${"p".repeat(options.padBytes)}` : "";
    const newMessages = last
      ? [expertMessage(textPart(`Done${pad}`))]
      : [expertMessage(toolCallPart(call.id, call.toolName, call.args)), toolMessage(call.id, call.toolName, `result ${stepNumber}${pad}`)];
    messages.push(...newMessages);
    return checkpointBody(tenant, {
      id: createId(),
      stepNumber,
      status: last ? "completed" : "proceeding",
      messages: [...messages],
      newMessages,
      ...(last ? {} : { toolCall: call }),
    });
  });
}

export interface RuntimeRun {
  /** Checkpoints acknowledged with 200, in order. */
  acknowledged: string[];
  retries: number;
  /** Failed attempts by cause: a status code or the network error code. */
  failures: Map<string, number>;
  done: Promise<void>;
}

/**
 * Posts the bodies in order over HTTP like a runtime that survives outages: a 5xx, 429 or network error
 * is retried with capped backoff (the same body and id, so the server answers the stored checkpoint if
 * the first attempt committed); any other refusal fails the run.
 */
export function runRuntime(
  baseUrl: () => string,
  runtimeKey: string,
  expertJobId: string,
  bodies: unknown[],
  options: { pauseMs?: number; signal?: AbortSignal } = {},
): RuntimeRun {
  const run: RuntimeRun = { acknowledged: [], retries: 0, failures: new Map(), done: Promise.resolve() };
  const fail = (cause: string) => run.failures.set(cause, (run.failures.get(cause) ?? 0) + 1);
  run.done = (async () => {
    for (const body of bodies) {
      for (let attempt = 0; ; attempt++) {
        if (options.signal?.aborted) return;
        let status: number;
        let text = "";
        try {
          const response = await fetch(`${baseUrl()}/api/studio/v1/expert_jobs/${expertJobId}/checkpoints/`, {
            method: "POST",
            headers: { authorization: `Bearer ${runtimeKey}`, "content-type": "application/json" },
            body: JSON.stringify(body),
            signal: AbortSignal.timeout(20_000),
          });
          status = response.status;
          text = await response.text();
        } catch (error) {
          fail(String((error as { cause?: { code?: string } }).cause?.code ?? (error as Error).name));
          status = 0;
        }
        if (status === 200) {
          run.acknowledged.push((JSON.parse(text) as { data: { checkpoint: { id: string } } }).data.checkpoint.id);
          break;
        }
        if (status !== 0) fail(String(status));
        if (status !== 0 && status < 500 && status !== 429) throw new Error(`checkpoint refused: ${status} ${text}`);
        run.retries++;
        await new Promise((resolve) => setTimeout(resolve, Math.min(500, 25 * 2 ** Math.min(attempt, 5))));
      }
      if (options.pauseMs) await new Promise((resolve) => setTimeout(resolve, options.pauseMs));
    }
  })();
  return run;
}
