// experimaestro monitor: a small page without a build step. Routes are in the URL fragment:
//   #/                      the experiments
//   #/xp/NAME[/timeline]    the jobs of one (or their timeline)
//   #/job/TYPEID/ID         one job
// Live updates come from one EventSource (/api/events); the page never polls.
"use strict";

const TOKEN = document.querySelector('meta[name="xpm-token"]').content;
const DEFAULT_XP = document.querySelector('meta[name="xpm-experiment"]').content;
const STATES = ["running", "ready", "waiting", "unscheduled", "failed", "done"];
const COLORS = { done: "#2e7d32", failed: "#c62828", running: "#1565c0", waiting: "#9e9e9e",
                 ready: "#6a1b9a", unscheduled: "#bdbdbd", missing: "#795548" };
const PAGE = 100;

const view = document.getElementById("view");
const crumbs = document.getElementById("crumbs");
let current = null; // the controller of the shown view: {onJobs(msg), onLog(msg)}

// --- helpers ------------------------------------------------------------------------------------

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (k === "class") node.className = v;
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

async function api(path, options) {
  const response = await fetch(path, options);
  const data = await response.json().catch(() => ({ error: response.statusText }));
  if (!response.ok) throw new Error(data.error || `${response.status} ${response.statusText}`);
  return data;
}

function toast(text) {
  const t = document.getElementById("toast");
  t.textContent = text; t.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { t.hidden = true; }, 4000);
}

function badge(state, reason) {
  return el("span", { class: `badge s-${state}`, title: reason || null },
            reason && reason !== "failed" ? `${state} (${reason})` : state);
}

function fmtTime(t) {
  if (!t) return "";
  const d = new Date(t * 1000);
  const today = new Date().toDateString() === d.toDateString();
  return today ? d.toLocaleTimeString() : d.toLocaleString();
}

function fmtDuration(job) {
  if (!job.started) return "";
  const end = job.ended || (job.state === "running" ? Date.now() / 1000 : null);
  if (!end) return "";
  let s = Math.max(0, Math.round(end - job.started));
  const h = Math.floor(s / 3600); s -= h * 3600;
  const m = Math.floor(s / 60); s -= m * 60;
  return h ? `${h}h${String(m).padStart(2, "0")}m` : m ? `${m}m${String(s).padStart(2, "0")}s` : `${s}s`;
}

function shortType(typeid) { return typeid.split(".").pop(); }

function jobLink(key, text) {
  return el("a", { href: `#/job/${key}` }, text || `${shortType(key.split("/")[0])} ${key.split("/")[1].slice(0, 12)}`);
}

function tagChips(tags) {
  return Object.entries(tags || {}).map(([k, v]) => el("span", { class: "tag" }, `${k}=${v}`));
}

function progressBar(job) {
  if (job.progress === null || job.progress === undefined) return "";
  const pct = Math.round(job.progress * 100);
  return el("span", { class: "progress", title: job.progress_desc || "" },
            el("span", { class: "bar" }, el("span", { style: `width:${pct}%` })),
            ` ${pct}%`, job.progress_desc ? el("span", { class: "muted" }, ` ${job.progress_desc}`) : "");
}

function launcherText(job) {
  if (!job.launcher) return "";
  let text = job.launcher + (job.host ? `@${job.host}` : "");
  if (job.slurm_jobid) text += ` #${job.slurm_jobid}`;
  return text;
}

function confirmKill(key) {
  const dialog = document.getElementById("confirm");
  document.getElementById("confirm-text").textContent =
    `Stop job ${key}? It receives SIGTERM and ends as failed (cancelled).`;
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "yes"), { once: true });
    dialog.showModal();
  });
}

async function killJob(key) {
  if (!(await confirmKill(key))) return;
  try {
    const result = await api(`/api/job/${key}/kill`, { method: "POST", headers: { "X-XPM-Token": TOKEN } });
    toast(result.message);
  } catch (e) { toast(e.message); }
}

// --- live stream --------------------------------------------------------------------------------

function connect() {
  const live = document.getElementById("live");
  const source = new EventSource("/api/events");
  source.onopen = () => { live.textContent = "live"; live.classList.remove("off"); };
  source.onerror = () => { live.textContent = "reconnecting"; live.classList.add("off"); };
  source.onmessage = (event) => {
    const msg = JSON.parse(event.data);
    if (msg.type === "hello") { if (current && current.reload) current.reload(); return; }
    if (msg.type === "jobs" && current && current.onJobs) current.onJobs(msg);
    if (msg.type === "log" && current && current.onLog) current.onLog(msg);
  };
}

// --- experiments --------------------------------------------------------------------------------

function showExperiments() {
  crumbs.replaceChildren(el("span", {}, "experiments"));
  const table = el("table", { id: "experiments" },
    el("thead", {}, el("tr", {}, el("th", {}, "experiment"), el("th", {}, "jobs"),
                       STATES.map((s) => el("th", {}, s)))),
    el("tbody"));
  view.replaceChildren(table);
  async function reload() {
    const data = await api("/api/experiments");
    table.tBodies[0].replaceChildren(...data.experiments.map((xp) =>
      el("tr", { "data-xp": xp.name },
        el("td", {}, el("a", { href: `#/xp/${encodeURIComponent(xp.name)}` }, xp.name)),
        el("td", {}, xp.jobs),
        STATES.map((s) => el("td", {}, xp.counts[s] ? badge(s, null) : "", xp.counts[s] ? ` ${xp.counts[s]}` : "")))));
    if (!data.experiments.length) table.tBodies[0].append(el("tr", {}, el("td", { colspan: 8, class: "muted" }, "no experiment yet")));
  }
  let timer = null;
  current = { reload, onJobs: () => { clearTimeout(timer); timer = setTimeout(reload, 200); } };
  reload();
}

// --- the jobs of an experiment ------------------------------------------------------------------

function showExperiment(name, tab) {
  crumbs.replaceChildren(el("a", { href: "#/" }, "experiments"), " / ", el("span", {}, name));
  const filters = { states: new Set(), tags: [], q: "", offset: 0 };
  const stateBar = el("span", { class: "states" });
  const tagSelect = el("select", { id: "tag-filter" }, el("option", { value: "" }, "filter by tag…"));
  const tagChipsBar = el("span", { id: "tag-chips" });
  const search = el("input", { type: "search", id: "search", placeholder: "search id, task, tags, host" });
  const tabs = el("span", { class: "tabs" },
    el("button", { id: "tab-jobs", class: tab === "timeline" ? "" : "on",
                   onclick: () => { location.hash = `#/xp/${encodeURIComponent(name)}`; } }, "jobs"),
    el("button", { id: "tab-timeline", class: tab === "timeline" ? "on" : "",
                   onclick: () => { location.hash = `#/xp/${encodeURIComponent(name)}/timeline`; } }, "timeline"));
  const total = el("span", { class: "muted", id: "total" });
  const body = el("tbody");
  const table = el("table", { id: "jobs" },
    el("thead", {}, el("tr", {}, ["state", "task", "id", "tags", "progress", "started", "duration",
                                   "launcher", ""].map((h) => el("th", {}, h)))), body);
  const pager = el("div", { class: "pager" });
  view.replaceChildren(el("div", { class: "toolbar" }, tabs, stateBar, tagSelect, tagChipsBar, search, total),
                       tab === "timeline" ? el("div", { id: "timeline-box" }) : table,
                       tab === "timeline" ? "" : pager);
  const rows = new Map(); // key -> <tr>
  let counts = {}, reloadTimer = null, loading = false, again = false;

  const stateButtons = STATES.map((s) => el("button", {
    class: "state-filter", "data-state": s,
    onclick: () => { filters.states.has(s) ? filters.states.delete(s) : filters.states.add(s); filters.offset = 0; renderStates(); reload(); },
  }));
  stateBar.append(...stateButtons);
  function renderStates() { // updated in place: a live update does not replace what one clicks
    stateButtons.forEach((b, i) => {
      const s = STATES[i];
      b.className = `state-filter ${filters.states.has(s) ? "on" : ""}`;
      b.textContent = `${s} ${counts[s] || 0}`;
    });
  }
  function renderTagChips() {
    tagChipsBar.replaceChildren(...filters.tags.map((t, i) => el("button", {
      class: "on tag-chip", title: "remove this filter",
      onclick: () => { filters.tags.splice(i, 1); filters.offset = 0; renderTagChips(); reload(); } }, `${t} ✕`)));
  }
  tagSelect.addEventListener("change", () => {
    if (tagSelect.value && !filters.tags.includes(tagSelect.value)) filters.tags.push(tagSelect.value);
    tagSelect.value = ""; filters.offset = 0; renderTagChips(); reload();
  });
  let searchTimer = null;
  search.addEventListener("input", () => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(() => { filters.q = search.value; filters.offset = 0; reload(); }, 150);
  });

  function row(job) {
    return el("tr", { "data-key": job.key, "data-state": job.state },
      el("td", { class: "state" }, badge(job.state, job.reason)),
      el("td", { title: job.typeid }, shortType(job.typeid)),
      el("td", {}, jobLink(job.key, job.identifier.slice(0, 12))),
      el("td", { class: "tags" }, tagChips(job.tags)),
      el("td", {}, progressBar(job)),
      el("td", {}, fmtTime(job.started)),
      el("td", {}, fmtDuration(job)),
      el("td", {}, launcherText(job)),
      el("td", {}, job.state === "running" && job.started ? el("button", { class: "kill", onclick: () => killJob(job.key) }, "stop") : ""));
  }

  async function reload() {
    if (tab === "timeline") return drawTimeline();
    if (loading) { again = true; return; }
    loading = true;
    try {
      const params = new URLSearchParams({ experiment: name, offset: filters.offset, limit: PAGE, q: filters.q });
      filters.states.forEach((s) => params.append("state", s));
      filters.tags.forEach((t) => params.append("tag", t));
      const data = await api(`/api/jobs?${params}`);
      counts = data.counts; renderStates();
      const known = new Set(filters.tags);
      tagSelect.replaceChildren(el("option", { value: "" }, "filter by tag…"),
        ...Object.entries(data.tags).flatMap(([k, vs]) => vs.map((v) => `${k}=${v}`))
          .filter((t) => !known.has(t)).map((t) => el("option", { value: t }, t)));
      rows.clear();
      body.replaceChildren(...data.jobs.map((job) => { const r = row(job); rows.set(job.key, r); return r; }));
      if (!data.jobs.length) body.append(el("tr", {}, el("td", { colspan: 9, class: "muted" }, "no job matches")));
      total.textContent = `${data.total} job${data.total === 1 ? "" : "s"}`;
      const last = Math.min(data.total, data.offset + data.jobs.length);
      pager.replaceChildren(
        el("button", { disabled: data.offset === 0 || null, onclick: () => { filters.offset = Math.max(0, filters.offset - PAGE); reload(); } }, "‹ previous"),
        el("span", { class: "muted" }, data.total ? `${data.offset + 1}–${last} of ${data.total}` : ""),
        el("button", { disabled: last >= data.total || null, onclick: () => { filters.offset += PAGE; reload(); } }, "next ›"));
    } catch (e) { toast(e.message); }
    loading = false;
    if (again) { again = false; reload(); }
  }

  // --- the timeline: one bar per job, waiting (light) then running (coloured by state) ---
  async function drawTimeline() {
    const box = document.getElementById("timeline-box");
    const data = await api(`/api/timeline?experiment=${encodeURIComponent(name)}`);
    const jobs = data.jobs.filter((j) => j[2] || j[3]);
    total.textContent = `${jobs.length} jobs`;
    counts = {};
    data.jobs.forEach((j) => { counts[j[1]] = (counts[j[1]] || 0) + 1; });
    renderStates();
    const now = Date.now() / 1000;
    const t0 = Math.min(...jobs.map((j) => j[2] || j[3]));
    const t1 = Math.max(...jobs.map((j) => j[4] || now), t0 + 1);
    const rowH = jobs.length > 400 ? 2 : jobs.length > 100 ? 5 : 14;
    const width = Math.max(400, box.clientWidth || 800), left = rowH >= 14 ? 160 : 0;
    const canvas = el("canvas", { id: "timeline", width, height: Math.max(40, jobs.length * rowH + 20) });
    box.replaceChildren(canvas, el("p", { class: "muted" },
      "light grey: waiting (submitted, not started); coloured: running, then its end state. ",
      `From ${fmtTime(t0)} to ${fmtTime(t1)}.`));
    const ctx = canvas.getContext("2d");
    const x = (t) => left + ((t - t0) / (t1 - t0)) * (width - left - 10);
    ctx.font = "11px sans-serif";
    jobs.forEach(([key, state, submitted, started, ended], i) => {
      const y = 10 + i * rowH, h = Math.max(1, rowH - 2);
      if (left) { ctx.fillStyle = "#424242"; ctx.fillText(`${shortType(key.split("/")[0])} ${key.split("/")[1].slice(0, 8)}`, 2, y + h - 2); }
      const waitedUntil = started || (ended ? null : now); // not started yet: waiting until now
      if (submitted && waitedUntil) { ctx.fillStyle = "#d6d6d6"; ctx.fillRect(x(submitted), y, Math.max(1, x(waitedUntil) - x(submitted)), h); }
      const from = started || submitted, to = ended || (state === "running" ? now : from);
      ctx.fillStyle = COLORS[state] || "#999";
      if (started || ended) ctx.fillRect(x(from), y, Math.max(2, x(to) - x(from)), h);
    });
    const tip = document.getElementById("tip");
    const pick = (ev) => jobs[Math.floor((ev.offsetY - 10) / rowH)];
    canvas.onmousemove = (ev) => {
      const j = pick(ev);
      if (!j) { tip.hidden = true; return; }
      tip.textContent = `${j[0]} — ${j[1]}${j[3] ? `, started ${fmtTime(j[3])}` : ""}${j[4] ? `, ended ${fmtTime(j[4])}` : ""}`;
      tip.style.left = `${ev.clientX + 12}px`; tip.style.top = `${ev.clientY + 12}px`; tip.hidden = false;
    };
    canvas.onmouseleave = () => { tip.hidden = true; };
    canvas.onclick = (ev) => { const j = pick(ev); if (j) location.hash = `#/job/${j[0]}`; };
  }

  function onJobs(msg) {
    // A reply on its way may predate this message (it would put back what the message changed):
    // fetch again once it is in.
    if (loading) again = true;
    if (msg.counts[name]) { counts = msg.counts[name]; renderStates(); }
    let refetch = false;
    for (const job of msg.jobs) {
      if (job.experiments && !job.experiments.includes(name) && !rows.has(job.key)) continue;
      const old = rows.get(job.key);
      if (old && !job.removed && (!filters.states.size || filters.states.has(job.state))) {
        const r = row(job); old.replaceWith(r); rows.set(job.key, r);
      } else refetch = true; // a new job, one leaving the filter, or one removed: reload the page
    }
    if (refetch || tab === "timeline") { clearTimeout(reloadTimer); reloadTimer = setTimeout(reload, tab === "timeline" ? 1000 : 50); }
  }
  current = { reload, onJobs };
  renderStates();
  reload();
}

// --- one job ------------------------------------------------------------------------------------

function tree(value) {
  if (value === null || typeof value !== "object") return el("span", {}, JSON.stringify(value));
  if (Array.isArray(value)) return el("ul", { class: "tree" }, value.map((v, i) => el("li", {}, el("span", { class: "k" }, `[${i}] `), tree(v))));
  const items = [];
  if (value.$type) items.push(el("li", { class: "t" }, value.$type));
  if (value.$job) items.push(el("li", {}, "output of job ", jobLink(value.$job)));
  if (value.$seen) items.push(el("li", { class: "t" }, "(shown above)"));
  for (const [k, v] of Object.entries(value)) {
    if (k.startsWith("$")) continue;
    const simple = v === null || typeof v !== "object";
    items.push(el("li", {}, el("span", { class: "k" }, `${k}: `), simple ? tree(v) : el("details", { open: true }, el("summary", {}, ""), tree(v))));
  }
  return el("ul", { class: "tree" }, items);
}

function showJob(key) {
  const [typeid, id] = key.split("/");
  crumbs.replaceChildren(el("a", { href: "#/" }, "experiments"), " / ", el("span", {}, `${shortType(typeid)} ${id.slice(0, 12)}`));
  const logPre = el("pre", { id: "log" });
  // follow: the log is on the host the job runs on; the next request waits there for more.
  // epoch: bumped when the log shown starts over (another stream, the page drawn again): the
  // request out is aborted (a wait on the host), its reply dropped, and the log asked for again.
  let stream = "stderr", next = null, fetching = false, pending = false, follow = false, epoch = 0;
  let inflight = null;
  function restartLog() { next = null; follow = false; epoch++; if (inflight) inflight.abort(); }
  const logTabs = el("span", { class: "tabs" });
  function renderLogTabs() {
    logTabs.replaceChildren(...["stderr", "stdout"].map((s) => el("button", {
      class: s === stream ? "on" : "", id: `log-${s}`,
      onclick: () => { stream = s; restartLog(); logPre.textContent = ""; renderLogTabs(); tail(); } }, s)));
  }
  async function tail() {
    if (fetching) { pending = true; return; }
    fetching = true;
    const asked = epoch;
    inflight = new AbortController();
    try {
      const query = next === null ? "" : `?offset=${next}${follow ? "&wait=1" : ""}`;
      const chunk = await api(`/api/job/${key}/log/${stream}${query}`, { signal: inflight.signal });
      if (current !== controller) return; // the user went elsewhere meanwhile
      if (asked !== epoch) pending = true;
      else {
        const atBottom = logPre.scrollTop + logPre.clientHeight >= logPre.scrollHeight - 4;
        if (next === null) logPre.textContent = chunk.message || (chunk.size === null ? `(no ${stream} yet)` : chunk.text);
        else logPre.append(chunk.text);
        next = chunk.next;
        follow = !!chunk.follow;
        if (atBottom || chunk.offset === 0) logPre.scrollTop = logPre.scrollHeight;
        if (chunk.size !== null && chunk.next < chunk.size) pending = true; // more than one chunk
      }
    } catch (e) {
      if (asked !== epoch) pending = true; // aborted: the log starts over
      else { toast(e.message); follow = false; }
    }
    inflight = null;
    fetching = false;
    if (pending || follow) { pending = false; tail(); }
  }
  const explainPre = el("pre", { id: "explain", hidden: true }, "");
  const explainButton = el("button", { id: "explain-button", onclick: async () => {
    explainButton.disabled = true;
    const data = await api(`/api/job/${key}/explain`).catch((e) => ({ error: e.message }));
    explainPre.textContent = data.text || data.error;
    explainPre.hidden = false;
  } }, "explain the identifier");

  // One fetch at a time: a reply computed before a later change must not land after it (a change
  // seen while a fetch is out fetches again once it is in); nor may it draw over another view.
  let loading = false, again = false, controller = null;
  async function reload() {
    if (loading) { again = true; return; }
    loading = true;
    try { await render(); } finally { loading = false; }
    if (again) { again = false; reload(); }
  }
  async function render() {
    let job;
    try { job = await api(`/api/job/${key}`); } catch (e) {
      if (current === controller) view.replaceChildren(el("p", {}, e.message));
      return;
    }
    if (current !== controller) return; // the user went elsewhere meanwhile
    const failure = job.failure ? el("div", { class: "card failure", id: "failure" },
      el("h3", {}, `Failed: ${job.failure.reason} (exit code ${job.failure.code})`),
      job.failure.message ? el("div", {}, job.failure.message) : "",
      job.failure.reason === "dependency" ? "" : el("div", { class: "muted" }, "the end of stderr is below")) : "";
    const deps = (list) => list.length ? el("ul", {}, list.map((d) => el("li", {}, badge(d.state), " ", jobLink(d.key)))) : el("p", { class: "muted" }, "none");
    view.replaceChildren(
      el("div", { class: "toolbar" }, el("h2", { style: "margin:0" }, `${job.typeid}`), badge(job.state, job.reason),
         job.state === "running" && job.started ? el("button", { class: "kill danger", onclick: () => killJob(key) }, "stop this job") : ""),
      failure,
      el("div", { class: "grid2" },
        el("div", { class: "card" }, el("h3", {}, "Job"), el("dl", { class: "info" },
          el("dt", {}, "identifier"), el("dd", {}, job.identifier),
          el("dt", {}, "folder"), el("dd", {}, job.path),
          ...(job.remote ? [el("dt", {}, "on the host"), el("dd", { id: "remote" }, job.remote.error || job.remote.location,
            job.remote.synced_at ? el("span", { class: "muted" }, ` (copied here ${fmtTime(job.remote.synced_at)})`) : el("span", { class: "muted" }, " (copied here when it ends)"))] : []),
          el("dt", {}, "experiments"), el("dd", {}, job.experiments.map((n) => el("a", { href: `#/xp/${encodeURIComponent(n)}` }, n, " "))),
          el("dt", {}, "tags"), el("dd", {}, tagChips(job.tags)),
          el("dt", {}, "progress"), el("dd", {}, progressBar(job)),
          el("dt", {}, "submitted"), el("dd", {}, fmtTime(job.submitted)),
          el("dt", {}, "started"), el("dd", {}, fmtTime(job.started)),
          el("dt", {}, "ended"), el("dd", {}, fmtTime(job.ended)),
          el("dt", {}, "duration"), el("dd", {}, fmtDuration(job)),
          el("dt", {}, "launcher"), el("dd", {}, launcherText(job)))),
        el("div", { class: "card" }, el("h3", {}, "Depends on"), deps(job.dependencies),
           el("h3", {}, "Needed by"), deps(job.dependents))),
      el("div", { class: "card", id: "logs" }, el("h3", {}, "Logs ", logTabs), logPre),
      el("div", { class: "grid2" },
        el("div", { class: "card" }, el("h3", {}, "Parameters"), job.params ? tree(job.params) : el("p", {}, job.params_error)),
        el("div", { class: "card" }, el("h3", {}, "Why this identifier ", explainButton), explainPre)));
    renderLogTabs();
    restartLog();
    tail();
  }
  let timer = null;
  controller = current = {
    reload,
    onJobs: (msg) => { if (msg.jobs.some((j) => j.key === key)) { clearTimeout(timer); timer = setTimeout(reload, 50); } },
    onLog: (msg) => { if (msg.keys.includes(key) && next !== null) tail(); },
  };
  reload();
}

// --- routing ------------------------------------------------------------------------------------

function route() {
  const parts = location.hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
  if (parts[0] === "xp" && parts[1]) showExperiment(parts[1], parts[2]);
  else if (parts[0] === "job" && parts[2]) showJob(`${parts[1]}/${parts[2]}`);
  else showExperiments();
}

window.addEventListener("hashchange", route);
if (!location.hash && DEFAULT_XP) location.hash = `#/xp/${encodeURIComponent(DEFAULT_XP)}`;
route();
connect();
