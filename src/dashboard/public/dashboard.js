// Watches one expert job: its status and usage, and a live timeline of its checkpoints.
// The job is fetched with the key in the Authorization header. EventSource cannot send headers, so the
// stream gets it as ?access_token= (accepted on that route only, masked in the server's logs). The key
// never reaches the address bar; it is kept in sessionStorage only when the box is ticked.
const api = new URL("../api/studio/v1/", location.href);
const KEY_STORAGE = "expert-jobs-dashboard-key";
const REOPEN_DELAY_MS = 2000;
// The timeline shows each step's action, tool, status, tokens and times: the heavy parts (the whole
// conversation, the step's messages, tool call and result, a file read's content) are left out.
const TIMELINE_EXCLUDE = "messages,newMessages,toolCall,toolResult,actionContent";
const $ = (id) => document.getElementById(id);

/** The job being watched: { key, jobId, source, lastSeq, lastTokens, refreshTimer, reopenTimer, stopped }. */
let current;

class ApiError extends Error {
  constructor(status, body) {
    const reason = Array.isArray(body?.reason) ? body.reason.map((issue) => `${issue.path} ${issue.message}`).join("; ") : body?.reason;
    super(reason ? `${status} ${body.error}: ${reason}` : `HTTP ${status}`);
    this.status = status;
  }
  /** Nothing to retry: the key or the job id is wrong. */
  get final() {
    return this.status === 401 || this.status === 403 || this.status === 404 || this.status === 422;
  }
}

function setConnection(state) {
  const badge = $("connection");
  badge.dataset.state = state;
  badge.textContent = state;
}

function notice(text, kind = "info") {
  const element = $("notice");
  element.hidden = !text;
  element.textContent = text ?? "";
  element.dataset.kind = kind;
}

const formatNumber = (value) => (value ?? 0).toLocaleString("en-US");

function formatDuration(ms) {
  if (ms === undefined || Number.isNaN(ms)) return "–";
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  const seconds = Math.round(ms / 1000);
  return `${Math.floor(seconds / 60)} min ${String(seconds % 60).padStart(2, "0")} s`;
}

async function fetchJob(watch) {
  const response = await fetch(new URL(`expert_jobs/${encodeURIComponent(watch.jobId)}`, api), {
    headers: { authorization: `Bearer ${watch.key}` },
  });
  const body = await response.json().catch(() => undefined);
  if (!response.ok) throw new ApiError(response.status, body);
  return body.data.expertJob;
}

function renderJob(job) {
  $("job").hidden = false;
  $("job-expert").textContent = job.expertKey;
  $("job-status").textContent = job.status;
  $("job-status").dataset.status = job.status;
  $("job-id-value").textContent = job.id;
  $("job-model").textContent = job.model;
  $("job-step").textContent = `${job.currentStep} of at most ${job.maxSteps} (${job.totalSteps} steps run)`;
  $("job-duration").textContent = formatDuration(job.totalDuration);
  const usage = job.usage;
  $("job-tokens").textContent =
    `${formatNumber(usage.totalTokens)} (in ${formatNumber(usage.inputTokens)}, out ${formatNumber(usage.outputTokens)}, ` +
    `reasoning ${formatNumber(usage.reasoningTokens)}, cached ${formatNumber(usage.cachedInputTokens)})`;
  $("job-updated").textContent = new Date(job.updatedAt).toLocaleString();
}

async function refresh(watch) {
  clearTimeout(watch.refreshTimer);
  try {
    const job = await fetchJob(watch);
    if (watch === current) renderJob(job);
  } catch (error) {
    if (watch !== current) return;
    notice(`Could not load the job: ${error.message}`, "error");
    if (error.final) stop("stopped");
  }
}

/** Checkpoints arrive in bursts; one job fetch per burst is enough. */
function scheduleRefresh(watch) {
  clearTimeout(watch.refreshTimer);
  watch.refreshTimer = setTimeout(() => refresh(watch), 250);
}

function cell(row, text, className) {
  const element = row.insertCell();
  element.textContent = text;
  if (className) element.className = className;
}

function addRow(watch, seq, checkpoint) {
  const row = document.createElement("tr");
  row.className = "new";
  row.dataset.seq = String(seq);
  const totalTokens = checkpoint.usage?.totalTokens ?? 0;
  const stepTokens = watch.lastTokens === undefined ? "" : ` (+${formatNumber(totalTokens - watch.lastTokens)})`;
  watch.lastTokens = totalTokens;
  const tool = checkpoint.toolName ? `${checkpoint.skillName ?? "?"} › ${checkpoint.toolName}` : "";
  const finished = checkpoint.finishedAt ? new Date(checkpoint.finishedAt) : undefined;
  cell(row, String(seq));
  cell(row, String(checkpoint.stepNumber));
  cell(row, checkpoint.action?.type ?? "");
  cell(row, tool, "tool");
  cell(row, checkpoint.status);
  cell(row, `${formatNumber(totalTokens)}${stepTokens}`, "number");
  cell(row, finished ? formatDuration(finished.getTime() - new Date(checkpoint.startedAt).getTime()) : "–", "number");
  cell(row, finished ? finished.toLocaleTimeString() : "");
  $("timeline").tBodies[0].append(row);
  $("timeline-section").hidden = false;
  $("checkpoint-count").textContent = `(${$("timeline").tBodies[0].rows.length})`;
}

function open(watch) {
  const url = new URL(`expert_jobs/${encodeURIComponent(watch.jobId)}/checkpoints/stream`, api);
  url.searchParams.set("exclude", TIMELINE_EXCLUDE);
  if (watch.lastSeq > 0) url.searchParams.set("after", String(watch.lastSeq));
  url.searchParams.set("access_token", watch.key);
  const source = new EventSource(url);
  watch.source = source;

  source.addEventListener("open", () => {
    setConnection("live");
    notice("");
    refresh(watch);
  });
  source.addEventListener("message", (event) => {
    const seq = Number(event.lastEventId);
    // A resumed stream starts after the last id the browser had, so this only guards against a replay.
    if (!(seq > watch.lastSeq)) return;
    watch.lastSeq = seq;
    addRow(watch, seq, JSON.parse(event.data));
    scheduleRefresh(watch);
  });
  source.addEventListener("complete", () => {
    source.close();
    setConnection("complete");
    refresh(watch);
  });
  source.addEventListener("error", (event) => {
    if (watch.stopped) return;
    // The server's own `event: error` shares its name with EventSource's connection error; only it has data.
    if (event instanceof MessageEvent) {
      notice(`The server reported a stream failure (${event.data}); resuming.`);
      return;
    }
    setConnection("reconnecting");
    // Network errors are retried by the browser itself (with Last-Event-ID). An HTTP error closes the
    // EventSource for good, so look at the job (a bad key or id stops here) and open a new one after the last event.
    if (source.readyState === EventSource.CLOSED) {
      watch.reopenTimer = setTimeout(async () => {
        await refresh(watch);
        if (!watch.stopped) open(watch);
      }, REOPEN_DELAY_MS);
    }
  });
}

function stop(state = "idle") {
  if (!current) return;
  current.stopped = true;
  current.source?.close();
  clearTimeout(current.refreshTimer);
  clearTimeout(current.reopenTimer);
  setConnection(state);
}

async function watch(key, jobId) {
  stop();
  const next = { key, jobId, source: undefined, lastSeq: 0, lastTokens: undefined, stopped: false };
  current = next;
  $("timeline").tBodies[0].replaceChildren();
  $("timeline-section").hidden = true;
  $("job").hidden = true;
  notice("");
  setConnection("connecting");
  try {
    renderJob(await fetchJob(next));
  } catch (error) {
    notice(`Could not load the job: ${error.message}`, "error");
    if (next === current) stop("stopped");
    return;
  }
  if (next === current) open(next);
}

function start() {
  const stored = sessionStorage.getItem(KEY_STORAGE);
  if (stored) {
    $("api-key").value = stored;
    $("remember").checked = true;
  }
  const fromHash = new URLSearchParams(location.hash.slice(1)).get("job");
  if (fromHash) $("job-id").value = fromHash;

  $("watch").addEventListener("submit", (event) => {
    event.preventDefault();
    const key = $("api-key").value.trim();
    const jobId = $("job-id").value.trim();
    if ($("remember").checked) sessionStorage.setItem(KEY_STORAGE, key);
    else sessionStorage.removeItem(KEY_STORAGE);
    // Only the job id goes into the address (a reload or a shared link finds the job again).
    history.replaceState(null, "", `#job=${encodeURIComponent(jobId)}`);
    watch(key, jobId);
  });
  if (stored && fromHash) watch(stored, fromHash);
}

start();
