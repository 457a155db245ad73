// The Darkroom console: plain ES module over the TypeScript client (darkroom-client.js).
import { DarkroomClient } from "./darkroom-client.js";

const $ = (id) => document.getElementById(id);
const STATUSES = ["Queued", "In Progress", "Complete", "Failed", "Cancelled"];
const state = {
  client: null, service: false, project: null, subs: [],
  generations: new Map(), shots: new Map(), tasks: new Map(), history: null,
};

function el(tag, { dataset = {}, ...props } = {}, ...children) {
  const node = Object.assign(document.createElement(tag), props);
  for (const [k, v] of Object.entries(dataset)) node.dataset[k] = v;
  node.append(...children.filter((c) => c !== null && c !== undefined));
  return node;
}

function showError(error) {
  $("error").textContent = error ? `${error.message ?? error}` : "";
}

// ---- sign in -------------------------------------------------------------------------
function fragment() {
  return new URLSearchParams(location.hash.slice(1));
}

function subjectOf(token) {
  try { return JSON.parse(atob(token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/"))).sub ?? null; }
  catch { return null; }
}

async function signIn(token, projectId) {
  $("signin-error").textContent = "";
  const client = new DarkroomClient({ baseUrl: location.origin, token });
  let service = false;
  try {
    await client.get("/api/workers");
    service = true;
  } catch (error) {
    if (error.status === 401) { $("signin-error").textContent = `Not signed in: ${error.message}`; return; }
  }
  signOut(false);
  Object.assign(state, { client, service, token });
  $("signin").hidden = true;
  $("console").hidden = false;
  $("ops-panel").hidden = !service;
  $("credits-panel").hidden = service;
  $("who").textContent = service ? "service key" : (subjectOf(token) ? `user ${subjectOf(token)}` : "access token");
  await loadProjects();
  if (service) { loadOps(); state.opsTimer = setInterval(loadOps, 5000); }
  else watchCredits();
  if (projectId) await openProject(projectId);
  else if ($("project").value) await openProject($("project").value);
}

function signOut(showForm = true) {
  for (const sub of state.subs) sub.unsubscribe();
  state.subs = [];
  if (state.client) state.client.close();
  clearInterval(state.opsTimer);
  state.client = null;
  if (showForm) {
    $("signin").hidden = false;
    $("console").hidden = true;
    history.replaceState(null, "", location.pathname);
  }
}

async function loadProjects() {
  const select = $("project");
  select.replaceChildren(el("option", { value: "", textContent: "choose a project" }));
  try {
    const projects = await state.client.projects();
    for (const p of projects) select.append(el("option", { value: p.id, textContent: p.name ?? p.id }));
  } catch (error) {
    if (!state.service) showError(error);
  }
}

// ---- a project: gallery, shots, tasks, live --------------------------------------------
function live(text) { $("live").textContent = text; }

async function openProject(projectId) {
  showError(null);
  for (const sub of state.subs.splice(0)) sub.unsubscribe();
  state.generations.clear(); state.shots.clear(); state.tasks.clear();
  state.project = projectId;
  renderGallery(); renderShots(); renderBoard();
  if ([...$("project").options].some((o) => o.value === projectId)) $("project").value = projectId;
  const onError = (error) => { showError(error); live("error"); };
  state.subs.push(state.client.subscribe(`project:${projectId}`, {
    onSnapshot: (snapshot) => {
      state.generations.clear(); state.shots.clear();
      for (const g of snapshot.generations ?? []) state.generations.set(g.id, g);
      for (const s of snapshot.shots ?? []) state.shots.set(s.id, s);
      renderGallery(); renderShots(); live("live");
    },
    onChange: (change) => { for (const c of flatten(change)) applyProject(c); renderGallery(); renderShots(); },
    onError,
  }));
  state.subs.push(state.client.subscribe(`tasks:${projectId}`, {
    onSnapshot: (snapshot) => {
      state.tasks.clear();
      for (const t of snapshot.tasks ?? []) state.tasks.set(t.id, t);
      renderBoard();
    },
    onChange: (change) => {
      for (const c of flatten(change)) if (c.kind === "task.upserted") state.tasks.set(c.data.id, c.data);
      renderBoard();
      if (!state.service) refreshCredits();
    },
    onError,
  }));
  const url = new URLSearchParams(fragment());
  url.set("project", projectId);
  history.replaceState(null, "", `#${url}`);
}

function flatten(change) {
  return change.kind === "batch" ? change.data.changes : [change];
}

function applyProject(change) {
  const { kind, data } = change;
  if (kind === "generation.upserted") {
    if (data.parent_generation_id || data.deleted) state.generations.delete(data.id);
    else state.generations.set(data.id, data);
  } else if (kind === "generation.removed") state.generations.delete(data.id);
  else if (kind === "shot.upserted") data.deleted ? state.shots.delete(data.id) : state.shots.set(data.id, data);
  else if (kind === "shot.removed") state.shots.delete(data.id);
  else if (kind === "project.removed") showError(new Error("this project was deleted"));
}

function renderGallery() {
  const starred = $("filter-starred").checked, type = $("filter-type").value;
  const text = $("filter-text").value.trim().toLowerCase();
  const rows = [...state.generations.values()]
    .filter((g) => (!starred || g.starred) && (!type || (g.type ?? g.media_type) === type)
      && (!text || `${g.name ?? ""}`.toLowerCase().includes(text)))
    .sort((a, b) => `${b.created_at}`.localeCompare(`${a.created_at}`));
  $("gallery-count").textContent = `(${rows.length})`;
  $("gallery").replaceChildren(...rows.map((g) => {
    const name = g.name || g.id.slice(0, 8);
    const src = g.thumbnail_url || g.location;
    const media = src ? el("img", { src, alt: name, loading: "lazy" }) : el("div", { className: "placeholder", textContent: g.type ?? "?" });
    const star = el("button", {
      type: "button", className: "star", textContent: g.starred ? "★" : "☆",
      ariaLabel: `${g.starred ? "Unstar" : "Star"} ${name}`, ariaPressed: String(!!g.starred),
      onclick: () => act(state.client.patch("/api/generations/{id}", { path: { id: g.id }, body: { starred: !g.starred } })),
    });
    const hist = historyButton(g.id, name);
    const variant = g.primary_variant_id ? `primary ${g.primary_variant_id.slice(0, 8)} of ${g.variant_count ?? 1}` : "no variant";
    return el("li", { className: "item", dataset: { generationId: g.id, starred: String(!!g.starred) } },
      media, el("span", { className: "name", textContent: name }),
      el("span", { className: "meta", textContent: `${g.type ?? g.media_type ?? ""} · ${variant}` }),
      el("span", { className: "actions" }, star, hist));
  }));
}

function renderShots() {
  const shots = [...state.shots.values()].sort((a, b) => (a.position ?? 0) - (b.position ?? 0));
  $("shots").replaceChildren(...shots.map((s) => {
    const images = [...(s.images ?? s.members ?? [])].sort((a, b) => (a.timeline_frame ?? Infinity) - (b.timeline_frame ?? Infinity)
      || (a.position ?? 0) - (b.position ?? 0));
    return el("li", { dataset: { shotId: s.id } },
      el("span", { className: "name", textContent: s.name }), " ", historyButton(s.id, s.name),
      el("ol", { className: "timeline", ariaLabel: `${s.name} timeline` }, ...images.map((i) => el("li",
        { dataset: { generationId: i.generation_id }, title: `frame ${i.timeline_frame ?? "–"}` },
        (i.thumbnail_url || i.location) ? el("img", { src: i.thumbnail_url || i.location, alt: `frame ${i.timeline_frame ?? "unpositioned"}` }) : "",
        el("span", { textContent: i.timeline_frame ?? "–" })))));
  }));
}

function progressOf(task) {
  if (task.status === "Complete") return 1;
  if (task.progress && task.progress.total) return task.progress.step / task.progress.total;
  return task.status === "In Progress" ? null : 0;  // running without steps: indeterminate
}

function renderBoard() {
  const tasks = [...state.tasks.values()].sort((a, b) => `${b.created_at}`.localeCompare(`${a.created_at}`));
  $("board").replaceChildren(...STATUSES.map((status) => {
    const mine = tasks.filter((t) => t.status === status);
    return el("section", { className: "column", ariaLabel: status, dataset: { column: status } },
      el("h3", { textContent: `${status} (${mine.length})` }),
      el("ul", {}, ...mine.map((t) => {
        const bar = el("progress", { max: 1, ariaLabel: `progress of ${t.task_type}` });
        const fraction = progressOf(t);
        if (fraction !== null) bar.value = fraction;
        const pct = fraction === null ? "running" : ["Failed", "Cancelled"].includes(t.status)
          ? t.status.toLowerCase() : `${Math.round(fraction * 100)}%`;
        const cancel = ["Queued", "In Progress"].includes(t.status) ? el("button", {
          type: "button", textContent: "Cancel", ariaLabel: `Cancel ${t.task_type} ${t.id.slice(0, 8)}`,
          onclick: () => act(state.client.patch("/api/tasks/{id}/cancel", { path: { id: t.id } })),
        }) : null;
        return el("li", { className: "task", dataset: { taskId: t.id, status: t.status } },
          el("span", { className: "name", textContent: t.task_type }),
          el("span", { className: "meta", textContent: t.id.slice(0, 8) }),
          bar, el("span", { className: "pct", textContent: pct }),
          t.error ? el("span", { className: "error", textContent: t.error }) : null,
          el("span", { className: "actions" }, cancel, historyButton(t.id, t.task_type)));
      })));
  }));
}

async function act(promise) {
  try { showError(null); return await promise; } catch (error) { showError(error); return null; }
}

// ---- credits ---------------------------------------------------------------------------
async function refreshCredits() {
  const credits = await act(state.client.credits());
  if (credits) renderCredits(credits);
}

function renderCredits(credits) {
  $("balance").textContent = credits.balance;
  $("ledger").tBodies[0].replaceChildren(...(credits.ledger ?? []).map((e) =>
    el("tr", {}, el("td", { textContent: e.kind }), el("td", { textContent: e.amount }), el("td", { textContent: e.reason }))));
}

function watchCredits() {
  const subject = subjectOf(state.token);
  refreshCredits();
  if (subject) {
    state.creditsSub = state.client.subscribe(`credits:${subject}`, {
      onSnapshot: () => refreshCredits(),
      onChange: () => refreshCredits(),
      onError: () => {},
    });
  }
}

// ---- history and time travel -----------------------------------------------------------
function historyButton(id, name) {
  return el("button", { type: "button", className: "history", textContent: "History",
    ariaLabel: `History of ${name}`, onclick: () => openHistory(id) });
}

async function fetchHistory(id, version) {
  return state.client.get("/api/history/{id}", { path: { id }, query: version ? { version } : {} });
}

async function openHistory(id) {
  const item = await act(fetchHistory(id));
  if (!item) return;
  state.history = item;
  $("history-panel").hidden = false;
  $("history-panel").dataset.itemId = id;
  $("history-title").textContent = `History of ${item.kind} ${item.id.slice(0, 8)} (version ${item.latest_version})`;
  $("events").tBodies[0].replaceChildren(...item.events.map((e) => el("tr", { dataset: { version: e.version } },
    el("td", { textContent: e.version }), el("td", { textContent: e.topic.split(".").pop() }),
    el("td", { textContent: e.timestamp.replace("T", " ").slice(0, 19) }), el("td", { textContent: e.position }))));
  for (const input of ["as-of-version", "compare-from", "compare-to"]) $(input).max = item.latest_version;
  $("as-of-version").value = item.latest_version;
  $("compare-from").value = Math.max(1, item.latest_version - 1);
  $("compare-to").value = item.latest_version;
  showState(item);
  $("history-panel").scrollIntoView({ block: "start" });
  $("as-of-version").focus();
}

const shown = (v) => (typeof v === "object" && v !== null ? JSON.stringify(v) : String(v));

function showState(item) {
  $("state-title").textContent = `As of version ${item.version}`;
  $("state").dataset.version = item.version;
  $("state").tBodies[0].replaceChildren(...Object.entries(item.state).map(([k, v]) =>
    el("tr", { dataset: { field: k } }, el("th", { scope: "row", textContent: k }), el("td", { textContent: shown(v) }))));
}

async function showDiff(from, to) {
  const [a, b] = await Promise.all([fetchHistory(state.history.id, from), fetchHistory(state.history.id, to)]);
  const keys = [...new Set([...Object.keys(a.state), ...Object.keys(b.state)])]
    .filter((k) => shown(a.state[k]) !== shown(b.state[k]) && !["version", "modified_on"].includes(k));
  $("state-title").textContent = `Changed from version ${from} to ${to}: ${keys.length} field(s)`;
  $("state").dataset.version = `${from}-${to}`;
  $("state").tBodies[0].replaceChildren(...keys.map((k) => el("tr", { dataset: { field: k } },
    el("th", { scope: "row", textContent: k }), el("td", { className: "before", textContent: shown(a.state[k]) }),
    el("td", { className: "after", textContent: shown(b.state[k]) }))));
}

// ---- service key: projections ----------------------------------------------------------
async function loadOps() {
  const status = await act(state.client.get("/api/projections"));
  if (!status) return;
  $("projections").tBodies[0].replaceChildren(...status.projections.map((p) => el("tr", { dataset: { projection: p.view } },
    el("th", { scope: "row", textContent: p.view }), el("td", { textContent: `${p.position} / ${p.head}` }),
    el("td", { textContent: p.lag_events }), el("td", { textContent: p.lag_seconds.toFixed(1) }),
    el("td", { textContent: p.dead_letters }),
    el("td", { className: "actions" }, p.dead_letters ? el("button", {
      type: "button", textContent: "Retry", ariaLabel: `Retry ${p.view}'s dead letters`,
      onclick: async () => { await act(state.client.post("/api/projections/{name}/retry", { path: { name: p.view } })); loadOps(); },
    }) : null,
    el("button", { type: "button", textContent: "Rebuild", ariaLabel: `Rebuild ${p.view}`, onclick: () => rebuild(p.view) })))));
  $("dead-letters").replaceChildren(...status.dead_letters.map((d) =>
    el("li", { textContent: `${d.view} at ${d.position} (${d.topic}): ${d.error}` })));
  if (!status.dead_letters.length) $("dead-letters").append(el("li", { textContent: "none" }));
}

async function rebuild(name) {
  const bar = $("rebuild-progress");
  bar.removeAttribute("value");
  $("rebuild-state").textContent = `rebuilding ${name}…`;
  $("rebuild-progress").dataset.view = name;
  const started = await act(state.client.post("/api/projections/{name}/rebuild", { path: { name } }));
  if (!started) { bar.value = 0; $("rebuild-state").textContent = ""; return; }
  for (;;) {
    const job = await act(state.client.get("/api/projections/{name}/rebuild", { path: { name } }));
    if (!job) return;
    if (job.total) bar.value = job.done / job.total;
    $("rebuild-state").textContent = `${name}: ${job.state} ${job.done ?? 0}/${job.total ?? "?"}`;
    if (job.state !== "running") {
      if (job.state === "done") bar.value = 1;
      $("rebuild-progress").dataset.state = job.state;
      $("rebuild-state").textContent = `${name}: ${job.state}${job.error ? ` (${job.error})` : ` in ${job.seconds} s, version ${job.version}`}`;
      loadOps();
      return;
    }
    await new Promise((r) => setTimeout(r, 250));
  }
}

// ---- wiring ----------------------------------------------------------------------------
$("signin-form").addEventListener("submit", (event) => {
  event.preventDefault();
  signIn($("token").value.trim(), fragment().get("project"));
});
$("signout").addEventListener("click", () => signOut());
$("project").addEventListener("change", () => $("project").value && openProject($("project").value));
$("open-project").addEventListener("click", () => $("project-id").value.trim() && openProject($("project-id").value.trim()));
for (const id of ["filter-starred", "filter-type", "filter-text"]) $(id).addEventListener("input", renderGallery);
$("history-close").addEventListener("click", () => { $("history-panel").hidden = true; });
$("as-of").addEventListener("submit", async (event) => {
  event.preventDefault();
  const item = await act(fetchHistory(state.history.id, Number($("as-of-version").value)));
  if (item) showState(item);
});
$("compare").addEventListener("submit", (event) => {
  event.preventDefault();
  act(showDiff(Number($("compare-from").value), Number($("compare-to").value)));
});

const initial = fragment();
if (initial.get("token")) signIn(initial.get("token"), initial.get("project"));
