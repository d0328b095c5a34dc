// The dashboard's entry: the key form and the two views, chosen by the address's hash (#job=<id> shows a
// job, anything else the job list). The key is sent in the Authorization header (and, for EventSource,
// which cannot send headers, as the stream's access_token, masked in the server's logs). It never reaches
// the address bar; it is kept in sessionStorage only when the box is ticked.
import { $ } from "./format.js";
import { leaveJob, showJob, wireJobView } from "./job-view.js";
import { leaveList, showList, wireJobList } from "./job-list.js";

const KEY_STORAGE = "expert-jobs-dashboard-key";
let key;

const jobFromHash = () => new URLSearchParams(location.hash.slice(1)).get("job") ?? "";

function route() {
  const jobId = jobFromHash();
  $("job-id").value = jobId;
  if (!key) return;
  if (jobId) {
    leaveList();
    showJob(key, jobId);
  } else {
    leaveJob();
    showList(key);
  }
}

function start() {
  wireJobView();
  wireJobList();
  const stored = sessionStorage.getItem(KEY_STORAGE);
  if (stored) {
    $("api-key").value = stored;
    $("remember").checked = true;
  }
  $("job-id").value = jobFromHash();

  $("watch").addEventListener("submit", (event) => {
    event.preventDefault();
    key = $("api-key").value.trim();
    const jobId = $("job-id").value.trim();
    if ($("remember").checked) sessionStorage.setItem(KEY_STORAGE, key);
    else sessionStorage.removeItem(KEY_STORAGE);
    // Only the job id goes into the address (a reload or a shared link finds the job again).
    const hash = jobId ? `#job=${encodeURIComponent(jobId)}` : "#jobs";
    if (location.hash !== hash) history.pushState(null, "", hash);
    route();
  });
  window.addEventListener("hashchange", route);
  if (stored) {
    key = stored;
    route();
  }
}

start();
