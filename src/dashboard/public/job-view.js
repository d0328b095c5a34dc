// One expert job: its header, what it waits for, the actions a person takes on it, a live timeline of its
// checkpoints and an inspector for one of them. The timeline streams light checkpoints (the heavy parts
// excluded); a step's detail is read on demand when it is opened.
import { ApiError, jobPath, request, streamUrl } from "./api.js";
import {
  $,
  actionProblem,
  cancelableStatuses,
  continuableStatuses,
  formatAgo,
  formatDuration,
  formatNumber,
  formatUsage,
  h,
  runningStatuses,
} from "./format.js";
import { renderCheckpoint } from "./step-inspector.js";

const REOPEN_DELAY_MS = 2000;
// Changes without a checkpoint (a claim, a cancel, a continue by anyone) come from the application's stream of
// job changes; while that stream is down, a stopped job is looked at again this often.
const STOPPED_POLL_MS = 5000;
// The timeline shows each step's action, tool, status, tokens and times: the heavy parts (the whole
// conversation, the step's messages, tool call and result, a file read's content) are left out.
const TIMELINE_EXCLUDE = "messages,newMessages,toolCall,toolResult,actionContent";
// Rows arriving in a small batch are live arrivals and flash; a replay's hundreds of rows do not.
const FLASH_BATCH = 5;
const REPLAY_FLUSH_MS = 150;
const finishedStatuses = new Set(["completed", "failed", "canceled", "expired"]);

/** The job being watched. */
let current;
let models;

export function setConnection(state, title = "") {
  const badge = $("connection");
  badge.dataset.state = state;
  badge.textContent = state;
  badge.title = title;
}

export function notice(text, kind = "info") {
  const element = $("notice");
  element.hidden = !text;
  element.textContent = text ?? "";
  element.dataset.kind = kind;
}

const fetchJob = async (watch) => (await request(watch.key, jobPath(watch.jobId))).data.expertJob;

function lastCheckpoint(watch) {
  return watch.checkpoints.at(-1);
}

function waitingText(watch, job) {
  const last = lastCheckpoint(watch);
  switch (job.status) {
    case "queued":
      return job.totalSteps === 0
        ? `Waiting for a runtime to claim it (queued ${formatAgo(job.createdAt)}). A runtime holding a runtime key of this application must be running and claiming jobs.`
        : `Queued again; waiting for a runtime to claim it (since ${formatAgo(job.updatedAt)}).`;
    case "processing":
      return `A runtime is working on it: step ${job.currentStep + 1} of at most ${job.maxSteps}.`;
    case "requestInteractiveToolResult":
      return "Waiting for your answer to the expert's question below.";
    case "requestDelegateResult":
      return last?.action?.type === "delegate"
        ? `Waiting for the delegate ${last.action.delegateTo?.key ?? ""} to return its result.`
        : "Waiting for a delegate expert to return its result.";
    case "exceededMaxSteps":
      return `Stopped at its step limit (maxSteps ${job.maxSteps}). Continue it with a higher maxSteps to go on.`;
    case "canceling":
      return "Cancel requested; waiting for the runtime to stop the step it is running.";
    case "completed":
      return `Completed after ${job.totalSteps} ${job.totalSteps === 1 ? "step" : "steps"}.`;
    case "failed": {
      const problem = actionProblem(last?.action);
      return problem ? `Failed: ${problem}` : "Failed (its runtime reported a failure or it ran out of retries).";
    }
    case "canceled":
      return "Canceled.";
    case "expired":
      return "Expired: it stayed paused longer than the server keeps paused jobs.";
    default:
      return job.status;
  }
}

function renderJob(watch, job) {
  watch.job = job;
  $("job").hidden = false;
  $("job-expert").textContent = job.expertKey;
  $("job-status").textContent = job.status;
  $("job-status").dataset.status = job.status;
  $("job-id-value").textContent = job.id;
  $("job-model").textContent = job.model;
  $("job-step").textContent = `${job.currentStep} of at most ${job.maxSteps} (${job.totalSteps} steps run)`;
  $("job-duration").textContent = formatDuration(job.totalDuration);
  $("job-tokens").textContent = formatUsage(job.usage);
  $("job-updated").textContent = new Date(job.updatedAt).toLocaleString();
  $("job-query").textContent = job.query ?? "–";
  const waiting = $("job-waiting");
  waiting.textContent = waitingText(watch, job);
  waiting.dataset.status = job.status;
  renderActions(watch, job);
}

// Actions.

function actionError(text) {
  const element = $("action-error");
  element.hidden = !text;
  element.textContent = text ?? "";
}

function question(action) {
  const args = action?.args ?? {};
  for (const name of ["question", "message", "prompt", "query", "text"]) if (typeof args[name] === "string") return args[name];
  return Object.keys(args).length > 0 ? JSON.stringify(args, null, 2) : "(no question given)";
}

function renderActions(watch, job) {
  const last = lastCheckpoint(watch);
  const asking = job.status === "requestInteractiveToolResult";
  $("answer-form").hidden = !asking;
  if (asking) {
    const action = last?.action?.type === "interactiveTool" ? last.action : undefined;
    $("answer-tool").textContent = action ? `${action.skillName} › ${action.toolName}` : "an interactive tool";
    $("answer-question").textContent = question(action);
  }
  const showContinue = continuableStatuses.has(job.status) || watch.resumeFrom !== undefined;
  $("continue-details").hidden = !showContinue;
  $("continue-title").textContent = watch.resumeFrom ? `Resume from step ${watch.resumeFrom.stepNumber}` : "Continue with a new query";
  $("resume-from").hidden = !watch.resumeFrom;
  if (watch.resumeFrom) $("resume-from-text").textContent = `checkpoint ${watch.resumeFrom.id} (step ${watch.resumeFrom.stepNumber})`;
  $("continue-model").placeholder = job.model;
  $("continue-max-steps").placeholder = String(job.maxSteps);
  const cancelable = cancelableStatuses.has(job.status);
  $("cancel-button").hidden = !cancelable;
  if (!cancelable) $("cancel-confirm").hidden = true;
  $("actions").hidden = !asking && !showContinue && !cancelable && $("action-error").hidden;
}

async function act(watch, label, run) {
  actionError("");
  const buttons = document.querySelectorAll("#actions button");
  for (const button of buttons) button.disabled = true;
  try {
    const job = (await run()).data.expertJob;
    if (watch !== current) return true;
    renderJob(watch, job);
    followIfMoving(watch, job);
    return true;
  } catch (error) {
    if (watch === current)
      actionError(`Could not ${label}: ${error instanceof ApiError ? error.message : `the request failed (${error.message})`}`);
    return false;
  } finally {
    for (const button of buttons) button.disabled = false;
  }
}

function continueBody() {
  const body = { query: $("continue-query").value };
  const model = $("continue-model").value.trim();
  const maxSteps = $("continue-max-steps").value.trim();
  if (model) body.model = model;
  if (maxSteps) body.maxSteps = Number(maxSteps);
  return body;
}

function wireActions() {
  $("answer-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const watch = current;
    const query = $("answer-text").value;
    const done = await act(watch, "send the answer", () =>
      request(watch.key, jobPath(watch.jobId, "/continue"), { method: "POST", body: { query, interactiveToolCallResult: true } }),
    );
    if (done) $("answer-text").value = "";
  });
  $("continue-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const watch = current;
    const resumeFrom = watch.resumeFrom;
    const done = await act(watch, resumeFrom ? "resume the job" : "continue the job", () =>
      resumeFrom
        ? request(watch.key, jobPath(watch.jobId, "/resume_from"), {
            method: "POST",
            body: { checkpointId: resumeFrom.id, ...continueBody() },
          })
        : request(watch.key, jobPath(watch.jobId, "/continue"), { method: "POST", body: continueBody() }),
    );
    if (done) {
      $("continue-query").value = "";
      watch.resumeFrom = undefined;
      if (watch.job) renderActions(watch, watch.job);
    }
  });
  $("resume-clear").addEventListener("click", () => {
    current.resumeFrom = undefined;
    if (current.job) renderActions(current, current.job);
  });
  $("cancel-button").addEventListener("click", () => {
    $("cancel-confirm").hidden = false;
    $("cancel-yes").focus();
  });
  $("cancel-no").addEventListener("click", () => {
    $("cancel-confirm").hidden = true;
  });
  $("cancel-yes").addEventListener("click", async () => {
    const watch = current;
    await act(watch, "cancel the job", () => request(watch.key, jobPath(watch.jobId, "/cancel"), { method: "POST" }));
    $("cancel-confirm").hidden = true;
  });
  $("continue-details").addEventListener("toggle", loadModels, { once: true });
}

/** The models the API accepts, from its own OpenAPI document, as suggestions for the model box. */
async function loadModels() {
  if (models) return;
  models = [];
  try {
    const response = await fetch(new URL("../openapi.json", location.href));
    const document_ = await response.json();
    const schema =
      document_.paths?.["/api/studio/v1/expert_jobs/{expertJobId}/continue"]?.post?.requestBody?.content?.["application/json"]?.schema;
    const options = schema?.properties?.model?.anyOf ?? [];
    models = options.map((option) => option.const ?? option.enum?.[0]).filter((model) => typeof model === "string");
  } catch {
    // Only suggestions: any model may still be typed, and the API says in words if it is not one.
  }
  $("model-options").replaceChildren(...models.map((model) => h("option", { value: model })));
}

// The timeline.

function cell(row, text, className) {
  const element = row.insertCell();
  element.textContent = text;
  if (className) element.className = className;
  return element;
}

function durationOf(checkpoint) {
  return checkpoint.finishedAt ? new Date(checkpoint.finishedAt).getTime() - new Date(checkpoint.startedAt).getTime() : 0;
}

function buildRow(watch, seq, checkpoint, previousTokens) {
  const row = document.createElement("tr");
  row.dataset.seq = String(seq);
  row.tabIndex = -1;
  row.setAttribute("aria-selected", "false");
  const totalTokens = checkpoint.usage?.totalTokens ?? 0;
  const stepTokens = previousTokens === undefined ? "" : ` (+${formatNumber(totalTokens - previousTokens)})`;
  const tool = checkpoint.toolName ? `${checkpoint.skillName ?? "?"} › ${checkpoint.toolName}` : "";
  const finished = checkpoint.finishedAt ? new Date(checkpoint.finishedAt) : undefined;
  const problem = actionProblem(checkpoint.action);
  cell(row, String(seq));
  cell(row, String(checkpoint.stepNumber));
  const action = cell(row, checkpoint.action?.type ?? "", "action");
  if (problem) {
    row.classList.add(checkpoint.action.type === "retry" ? "is-retry" : "is-error");
    action.append(" ", h("span", { className: "problem" }, `— ${problem}`));
  }
  cell(row, tool, "tool").title = tool;
  cell(row, checkpoint.status);
  cell(row, `${formatNumber(totalTokens)}${stepTokens}`, "number");
  cell(row, finished ? formatDuration(durationOf(checkpoint)) : "–", "number");
  cell(row, finished ? finished.toLocaleTimeString() : "");
  const bar = h("span", { className: "bar" });
  cell(row, "", "waterfall").append(bar);
  return row;
}

/**
 * The waterfall: each step's bar starts where the steps before it ended (their summed durations), so pauses
 * take no room. The scale is the job's whole duration, known before the replay starts, so replaying a long
 * job places each new bar once; only a scale that grows (live steps) moves every bar.
 */
function layoutWaterfall(watch, firstNew) {
  const scale = Math.max(watch.activeMs, watch.job?.totalDuration ?? 0) || 1;
  const from = scale === watch.scaleMs ? firstNew : 0;
  watch.scaleMs = scale;
  const rows = $("timeline").tBodies[0].rows;
  for (let index = from; index < rows.length; index++) {
    const bar = rows[index].lastElementChild.firstElementChild;
    const duration = durationOf(watch.checkpoints[index]);
    bar.style.marginLeft = `${(watch.offsets[index] / scale) * 100}%`;
    bar.style.width = `max(2px, ${(duration / scale) * 100}%)`;
    bar.title = formatDuration(duration);
  }
}

function flushRows(watch) {
  watch.flushFrame = undefined;
  if (watch !== current || watch.pending.length === 0) return;
  const fragment = document.createDocumentFragment();
  const flash = watch.pending.length <= FLASH_BATCH && watch.checkpoints.length > watch.pending.length;
  for (const { seq, checkpoint, previousTokens } of watch.pending) {
    const row = buildRow(watch, seq, checkpoint, previousTokens);
    if (flash) row.classList.add("new");
    fragment.append(row);
  }
  watch.pending = [];
  const body = $("timeline").tBodies[0];
  const firstNew = body.rows.length;
  body.append(fragment);
  if (!body.querySelector("tr[tabindex='0']")) body.rows[0].tabIndex = 0;
  $("timeline-section").hidden = false;
  $("checkpoint-count").textContent = `(${body.rows.length})`;
  layoutWaterfall(watch, firstNew);
  // What the job waits for, and its question, come from its last checkpoint.
  if (watch.job) renderJob(watch, watch.job);
}

function addCheckpoint(watch, seq, checkpoint) {
  const previousTokens = watch.checkpoints.at(-1)?.usage?.totalTokens;
  watch.checkpoints.push(checkpoint);
  watch.seqs.push(seq);
  watch.offsets.push(watch.activeMs);
  watch.activeMs += durationOf(checkpoint);
  watch.pending.push({ seq, checkpoint, previousTokens });
  if (watch.flushFrame !== undefined) return;
  // A replay of a long job arrives as hundreds of events at once: while the job's known steps are still
  // coming, rows are added a few times a second (each addition lays the table out again); live steps, once a frame.
  if (watch.checkpoints.length < watch.backlog) {
    const timer = setTimeout(() => flushRows(watch), REPLAY_FLUSH_MS);
    watch.flushFrame = () => clearTimeout(timer);
  } else {
    const frame = requestAnimationFrame(() => flushRows(watch));
    watch.flushFrame = () => cancelAnimationFrame(frame);
  }
}

// The inspector.

async function selectRow(watch, row, { focus = true } = {}) {
  if (!row) return;
  const body = $("timeline").tBodies[0];
  for (const other of body.querySelectorAll("tr[aria-selected='true'], tr[tabindex='0']")) {
    other.setAttribute("aria-selected", "false");
    other.tabIndex = -1;
  }
  row.setAttribute("aria-selected", "true");
  row.tabIndex = 0;
  if (focus) row.focus();
  const index = row.sectionRowIndex;
  const light = watch.checkpoints[index];
  watch.selected = light.id;
  const inspector = $("inspector");
  inspector.hidden = false;
  $("inspector-title").textContent = `Step ${light.stepNumber} · ${light.action?.type ?? ""}`;
  const content = $("inspector-content");
  content.replaceChildren(h("p", { className: "muted" }, "Loading the step…"));
  content.setAttribute("aria-busy", "true");
  try {
    // The whole conversation stays out; the step's own messages, tool call and result are what is shown.
    const checkpoint = (await request(watch.key, jobPath(watch.jobId, `/checkpoints/${encodeURIComponent(light.id)}?exclude=messages`)))
      .data.checkpoint;
    if (watch !== current || watch.selected !== light.id) return;
    content.replaceChildren(
      ...renderCheckpoint(checkpoint, {
        seq: watch.seqs[index],
        previousTokens: watch.checkpoints[index - 1]?.usage?.totalTokens,
        onResume: () => {
          watch.resumeFrom = { id: checkpoint.id, stepNumber: checkpoint.stepNumber };
          if (watch.job) renderActions(watch, watch.job);
          $("continue-details").open = true;
          $("continue-query").focus();
        },
      }).filter(Boolean),
    );
  } catch (error) {
    if (watch === current && watch.selected === light.id)
      content.replaceChildren(h("p", { className: "problem" }, `Could not load the step: ${error.message}`));
  } finally {
    content.removeAttribute("aria-busy");
  }
}

function wireTimeline() {
  const body = $("timeline").tBodies[0];
  body.addEventListener("click", (event) => {
    const row = event.target.closest("tr");
    if (row && current) selectRow(current, row);
  });
  body.addEventListener("keydown", (event) => {
    const row = event.target.closest("tr");
    if (!row || !current) return;
    const moves = {
      ArrowDown: row.nextElementSibling,
      ArrowUp: row.previousElementSibling,
      Home: body.rows[0],
      End: body.rows[body.rows.length - 1],
    };
    if (event.key in moves) {
      event.preventDefault();
      selectRow(current, moves[event.key]);
    } else if (event.key === "Enter" || event.key === " ") {
      event.preventDefault();
      selectRow(current, row);
    }
  });
  $("inspector-close").addEventListener("click", () => {
    $("inspector").hidden = true;
    if (current) current.selected = undefined;
  });
}

// Following the job.

async function refresh(watch) {
  clearTimeout(watch.refreshTimer);
  try {
    const job = await fetchJob(watch);
    if (watch !== current) return undefined;
    renderJob(watch, job);
    return job;
  } catch (error) {
    if (watch !== current) return undefined;
    notice(`Could not load the job: ${error.message}`, "error");
    if (error.final) stop("stopped");
    return undefined;
  }
}

/** Checkpoints arrive in bursts; one job fetch per burst is enough. */
function scheduleRefresh(watch) {
  clearTimeout(watch.refreshTimer);
  watch.refreshTimer = setTimeout(() => refresh(watch), 250);
}

/** A stopped job that runs again (continued, resumed, by this page or anyone) or has new checkpoints: stream again. */
function followIfMoving(watch, job) {
  if (watch.stopped || watch.source) return;
  if (runningStatuses.has(job.status) || job.totalSteps > watch.checkpoints.length) {
    clearTimeout(watch.pollTimer);
    open(watch);
  }
}

function watchStopped(watch) {
  clearTimeout(watch.pollTimer);
  watch.pollTimer = setTimeout(async () => {
    if (watch.stopped || watch.source) return;
    if (watch.changes?.readyState === EventSource.OPEN) return watchStopped(watch);
    const job = await refresh(watch);
    if (watch.stopped || watch.source) return;
    if (job) followIfMoving(watch, job);
    if (!watch.source && !watch.stopped) watchStopped(watch);
  }, STOPPED_POLL_MS);
}

function open(watch) {
  const lastSeq = watch.seqs.at(-1) ?? 0;
  const source = new EventSource(
    streamUrl(watch.key, jobPath(watch.jobId, "/checkpoints/stream"), {
      exclude: TIMELINE_EXCLUDE,
      after: lastSeq > 0 ? lastSeq : undefined,
    }),
  );
  watch.source = source;
  setConnection("connecting");

  source.addEventListener("open", () => {
    setConnection("live", "Streaming the job's checkpoints as they are posted");
    notice("");
    refresh(watch);
  });
  source.addEventListener("message", (event) => {
    const seq = Number(event.lastEventId);
    // A resumed stream starts after the last id the browser had, so this only guards against a replay.
    if (!(seq > (watch.seqs.at(-1) ?? 0))) return;
    addCheckpoint(watch, seq, JSON.parse(event.data));
    scheduleRefresh(watch);
  });
  source.addEventListener("complete", async (event) => {
    source.close();
    watch.source = undefined;
    // Every row is shown before the page says the stream is over.
    watch.flushFrame?.();
    flushRows(watch);
    const { status } = JSON.parse(event.data);
    // The connection's state, not the job's: the stream ended because the job stopped. A finished job says
    // so; a paused one is waiting for someone, and the page keeps looking for a continue.
    setConnection(
      finishedStatuses.has(status) ? "complete" : "paused",
      "The job stopped, so its stream ended; the page checks every few seconds whether it runs again",
    );
    const job = await refresh(watch);
    if (job) followIfMoving(watch, job);
    if (!watch.source) watchStopped(watch);
  });
  source.addEventListener("error", (event) => {
    if (watch.stopped) return;
    // The server's own `event: error` shares its name with EventSource's connection error; only it has data.
    if (event instanceof MessageEvent) {
      notice(`The server reported a stream failure (${event.data}); resuming.`);
      return;
    }
    setConnection("reconnecting", "The connection dropped; the browser reconnects and resumes after the last checkpoint it had");
    // Network errors are retried by the browser itself (with Last-Event-ID). An HTTP error closes the
    // EventSource for good, so look at the job (a bad key or id stops here) and open a new one after the last event.
    if (source.readyState === EventSource.CLOSED) {
      watch.source = undefined;
      watch.reopenTimer = setTimeout(async () => {
        await refresh(watch);
        if (!watch.stopped && !watch.source) open(watch);
      }, REOPEN_DELAY_MS);
    }
  });
}

/** The application's job changes: this job's status, step and usage as they change, checkpoint or not. */
function openChanges(watch) {
  const changes = new EventSource(streamUrl(watch.key, "expert_jobs/stream"));
  watch.changes = changes;
  // Opened (again): anything missed while it was away is read once.
  changes.addEventListener("open", () => {
    if (watch.job) refresh(watch).then((job) => job && followIfMoving(watch, job));
  });
  changes.addEventListener("message", (event) => {
    const job = JSON.parse(event.data);
    if (watch.stopped || watch !== current || job.id !== watch.jobId) return;
    renderJob(watch, job);
    followIfMoving(watch, job);
  });
  changes.addEventListener("error", () => {
    if (watch.stopped || changes.readyState !== EventSource.CLOSED) return;
    watch.changesTimer = setTimeout(() => {
      if (!watch.stopped) openChanges(watch);
    }, REOPEN_DELAY_MS);
  });
}

function stop(state = "idle") {
  if (!current) return;
  current.stopped = true;
  current.source?.close();
  current.source = undefined;
  current.changes?.close();
  clearTimeout(current.changesTimer);
  clearTimeout(current.refreshTimer);
  clearTimeout(current.reopenTimer);
  clearTimeout(current.pollTimer);
  current.flushFrame?.();
  setConnection(state);
}

export function leaveJob() {
  stop();
  current = undefined;
  $("job-view").hidden = true;
}

export async function showJob(key, jobId) {
  stop();
  const next = {
    key,
    jobId,
    job: undefined,
    source: undefined,
    checkpoints: [],
    seqs: [],
    offsets: [],
    // The steps the job had when the page opened it: the stream's replay.
    backlog: 0,
    activeMs: 0,
    scaleMs: 0,
    pending: [],
    /** Cancels the pending render of new rows, if one is scheduled. */
    flushFrame: undefined,
    selected: undefined,
    resumeFrom: undefined,
    stopped: false,
  };
  current = next;
  $("timeline").tBodies[0].replaceChildren();
  $("timeline-section").hidden = true;
  $("inspector").hidden = true;
  $("job").hidden = true;
  $("actions").hidden = true;
  actionError("");
  $("job-view").hidden = false;
  notice("");
  setConnection("connecting");
  try {
    const job = await fetchJob(next);
    next.backlog = job.totalSteps;
    renderJob(next, job);
  } catch (error) {
    if (next !== current) return;
    notice(`Could not load the job: ${error.message}`, "error");
    stop("stopped");
    return;
  }
  if (next !== current) return;
  open(next);
  openChanges(next);
}

export function wireJobView() {
  wireActions();
  wireTimeline();
}
