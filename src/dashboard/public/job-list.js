// The application's jobs, newest first, with filters and pages; rows follow the jobs live through the
// API's stream of job changes (GET expert_jobs/stream), and the page is read again whenever that stream
// (re)connects, so nothing missed while it was away stays stale.
import { request, streamUrl } from "./api.js";
import { $, formatAgo, formatDuration, formatNumber, h } from "./format.js";

const PAGE_SIZE = 20;
const REOPEN_DELAY_MS = 2000;

/** The list being shown: { key, skip, status, filter, jobs, total, source, reloadTimer, stopped }. */
let current;

function setListConnection(state) {
  const badge = $("connection");
  badge.dataset.state = state;
  badge.textContent = state;
  badge.title = state === "live" ? "Following the application's job changes" : "";
}

function listPath(list) {
  const params = new URLSearchParams({ take: String(PAGE_SIZE), skip: String(list.skip), sort: "createdAt", order: "desc" });
  if (list.status) params.set("status", list.status);
  if (list.filter) params.set("filter", list.filter);
  return `expert_jobs?${params}`;
}

function jobRow(job) {
  const row = h(
    "tr",
    { dataset: { jobId: job.id, status: job.status } },
    h("td", {}, h("a", { href: `#job=${encodeURIComponent(job.id)}`, className: "job-link" }, job.expertKey)),
    h("td", {}, h("span", { className: "status", dataset: { status: job.status } }, job.status)),
    h("td", { className: "model" }, job.model),
    h("td", { className: "number" }, `${job.currentStep} / ${job.maxSteps}`),
    h("td", { className: "number" }, formatNumber(job.usage.totalTokens)),
    h("td", { className: "number" }, job.totalSteps === 0 ? "–" : formatDuration(job.totalDuration)),
    h("td", { title: new Date(job.updatedAt).toLocaleString() }, formatAgo(job.updatedAt)),
    h("td", { className: "id" }, job.id),
  );
  return row;
}

function render(list) {
  const body = $("jobs").tBodies[0];
  body.replaceChildren(...list.jobs.map(jobRow));
  $("jobs-empty").hidden = list.jobs.length > 0;
  const first = list.total === 0 ? 0 : list.skip + 1;
  const last = list.skip + list.jobs.length;
  $("jobs-range").textContent = `${formatNumber(first)}–${formatNumber(last)} of ${formatNumber(list.total)}`;
  $("jobs-previous").disabled = list.skip === 0;
  $("jobs-next").disabled = last >= list.total;
}

async function load(list) {
  clearTimeout(list.reloadTimer);
  try {
    const body = await request(list.key, listPath(list));
    if (list !== current) return;
    list.jobs = body.data.expertJobs;
    list.total = body.meta.total;
    render(list);
    $("list-notice").hidden = true;
  } catch (error) {
    if (list !== current) return;
    $("list-notice").hidden = false;
    $("list-notice").textContent = `Could not list the jobs: ${error.message}`;
    if (error.final) stopList("stopped");
  }
}

function scheduleReload(list) {
  clearTimeout(list.reloadTimer);
  list.reloadTimer = setTimeout(() => load(list), 300);
}

const matches = (list, job) =>
  (!list.status || job.status === list.status) && (!list.filter || job.expertKey.toLowerCase().includes(list.filter.toLowerCase()));

function onChange(list, job) {
  const index = list.jobs.findIndex((shown) => shown.id === job.id);
  // A job on this page changes in place; one that joins or leaves the page (a new job, a status that no
  // longer passes the filter) moves the rows, so the page is read again.
  if (index >= 0 && matches(list, job)) {
    list.jobs[index] = job;
    const row = $("jobs").tBodies[0].rows[index];
    const next = jobRow(job);
    next.classList.add("new");
    row?.replaceWith(next);
    return;
  }
  if (index >= 0 || matches(list, job)) scheduleReload(list);
}

function open(list) {
  const source = new EventSource(streamUrl(list.key, "expert_jobs/stream"));
  list.source = source;
  source.addEventListener("open", () => {
    setListConnection("live");
    load(list);
  });
  source.addEventListener("message", (event) => onChange(list, JSON.parse(event.data)));
  source.addEventListener("error", () => {
    if (list.stopped) return;
    setListConnection("reconnecting");
    if (source.readyState === EventSource.CLOSED) {
      list.reopenTimer = setTimeout(async () => {
        await load(list);
        if (!list.stopped) open(list);
      }, REOPEN_DELAY_MS);
    }
  });
}

function stopList(state = "idle") {
  if (!current) return;
  current.stopped = true;
  current.source?.close();
  clearTimeout(current.reloadTimer);
  clearTimeout(current.reopenTimer);
  setListConnection(state);
}

export function leaveList() {
  stopList();
  current = undefined;
  $("list-view").hidden = true;
}

export async function showList(key) {
  stopList();
  const list = {
    key,
    skip: 0,
    status: $("jobs-status").value,
    filter: $("jobs-filter").value.trim(),
    jobs: [],
    total: 0,
    stopped: false,
  };
  current = list;
  $("list-view").hidden = false;
  $("list-notice").hidden = true;
  setListConnection("connecting");
  await load(list);
  if (list === current && !list.stopped) open(list);
}

export function wireJobList() {
  $("jobs-filters").addEventListener("submit", (event) => {
    event.preventDefault();
    if (!current) return;
    current.status = $("jobs-status").value;
    current.filter = $("jobs-filter").value.trim();
    current.skip = 0;
    load(current);
  });
  $("jobs-status").addEventListener("change", () => $("jobs-filters").requestSubmit());
  $("jobs-previous").addEventListener("click", () => {
    if (!current) return;
    current.skip = Math.max(0, current.skip - PAGE_SIZE);
    load(current);
  });
  $("jobs-next").addEventListener("click", () => {
    if (!current) return;
    current.skip += PAGE_SIZE;
    load(current);
  });
}
