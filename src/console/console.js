// The operators' console: a small static app over the gateway's JSON API. The API key
// lives in sessionStorage only (gone when the tab closes). Views refresh by short polling.
"use strict";

const KEY = "print-gateway.api-key";
const POLL_MS = 2000;
const $ = (id) => document.getElementById(id);
let timer = null;
let jobsCursor = null;
const chart = { last: null, points: [] };

function key() { return sessionStorage.getItem(KEY); }

function say(text, error) {
  const status = $("status");
  status.textContent = text || "";
  status.className = error ? "error" : "";
}

async function api(path, options) {
  const response = await fetch(path, {
    ...options,
    headers: { Authorization: "Bearer " + key(), Accept: "application/json",
               ...(options && options.body ? { "Content-Type": "application/json" } : {}) },
  });
  const body = await response.json().catch(() => null);
  if (response.status === 401) { signOut("The API key was refused; sign in again."); throw new Error("unauthorized"); }
  if (!response.ok) {
    const err = new Error((body && body.detail) || response.statusText);
    err.status = response.status; err.code = body && body.code;
    throw err;
  }
  return body;
}

// DOM helpers: text only, never HTML from data.
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}
function badge(text, kind) { return el("span", { class: "badge " + (kind || text) }, text); }
function when(t) { return t ? new Date(t).toLocaleString() : "–"; }
function facts(pairs) {
  return el("dl", {}, pairs.filter(([, v]) => v !== undefined && v !== null && v !== "")
    .flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]));
}

// ---- printers ----
async function showPrinters() {
  const list = await api("/v1/printers");
  const items = list.items.map((p) => {
    const h = p.health;
    const error = h.last_error
      ? `${h.last_error.code || "error"}${h.last_error.vendor_code ? " (" + h.last_error.vendor_code + ")" : ""}: ${h.last_error.message} — ${when(h.last_error.at)}`
      : "none";
    const caps = el("details", { ontoggle: (e) => loadCapabilities(e.target, p.id) },
      el("summary", {}, "Capabilities"), el("pre", {}, "…"));
    return el("li", { class: "card", "data-health": h.status, "data-printer": p.id },
      el("h3", {}, el("span", {}, p.display_name || p.id), badge(h.status)),
      facts([
        ["id", p.id], ["backend", p.backend],
        ["online", h.online === undefined ? "unknown" : h.online ? "yes" : "no"],
        ["last seen", when(h.last_seen_at)],
        ["breaker", h.circuit + (h.circuit_open_until ? " until " + when(h.circuit_open_until) : "")],
        ["failures", `${h.consecutive_failures} in a row (${h.breaker_failures} toward the breaker)`],
        ["last error", error],
        ["queue", `${h.queue.pending} pending · ${h.queue.processing} processing · ${h.queue.unconfirmed} unconfirmed`],
        ["enabled", p.enabled ? "yes" : "no"],
      ]),
      caps);
  });
  $("printer-list").replaceChildren(...items);
  await showPools(new Map(list.items.map((p) => [p.id, p])));
  await drawChart();
}

// Pools: their members in order, each with its health, and the policy that picks one.
async function showPools(printers) {
  let pools;
  try { pools = await api("/v1/pools"); } catch { return; }
  const items = pools.items.map((pool) => el("li", { class: "card", "data-pool": pool.id },
    el("h3", {}, el("span", {}, pool.display_name || pool.id), badge(pool.policy, "policy")),
    facts([["id", pool.id], ["policy", pool.policy === "first_healthy"
      ? "first healthy member, in this order" : "least loaded healthy member"]]),
    el("ol", { class: "members" }, pool.members.map((id) => {
      const p = printers.get(id);
      return el("li", {}, el("code", {}, id), " ", p ? badge(p.health.status) : badge("missing", "bad"),
        p ? ` · ${p.health.queue.pending} pending · ${p.health.queue.processing} processing` : "");
    }))));
  $("pool-list").replaceChildren(...items);
  $("pools-title").hidden = items.length === 0;
}

async function loadCapabilities(details, id) {
  if (!details.open) return;
  try {
    const caps = await api(`/v1/printers/${encodeURIComponent(id)}/capabilities`);
    details.querySelector("pre").textContent = JSON.stringify(caps.capabilities, null, 2);
  } catch (err) { details.querySelector("pre").textContent = err.message; }
}

// Throughput/failures from the gateway's own counters (/metrics), per poll interval.
async function drawChart() {
  let text;
  try { text = await (await fetch("/metrics")).text(); } catch { return; }
  const sum = (state) => text.split("\n")
    .filter((l) => l.startsWith("print_gateway_jobs_ended_total{") && l.includes(`state="${state}"`))
    .reduce((n, l) => n + Number(l.slice(l.lastIndexOf(" ") + 1)), 0);
  const now = { t: Date.now(), ok: sum("completed"), bad: sum("failed") };
  if (chart.last) {
    const bucket = Math.floor(now.t / 10000);
    const top = chart.points[chart.points.length - 1];
    const ok = Math.max(0, now.ok - chart.last.ok), bad = Math.max(0, now.bad - chart.last.bad);
    if (top && top.bucket === bucket) { top.ok += ok; top.bad += bad; }
    else chart.points.push({ bucket, ok, bad });
    chart.points = chart.points.slice(-30);
  }
  chart.last = now;
  const max = Math.max(1, ...chart.points.map((p) => p.ok + p.bad));
  const svg = $("chart");
  const bars = chart.points.flatMap((p, i) => {
    const x = i * 10, hOk = (p.ok / max) * 58, hBad = (p.bad / max) * 58;
    const ns = "http://www.w3.org/2000/svg";
    const a = document.createElementNS(ns, "rect");
    a.setAttribute("x", x + 1); a.setAttribute("width", 8); a.setAttribute("y", 60 - hOk - hBad);
    a.setAttribute("height", hOk); a.setAttribute("fill", "#1a7f37");
    const b = document.createElementNS(ns, "rect");
    b.setAttribute("x", x + 1); b.setAttribute("width", 8); b.setAttribute("y", 60 - hBad);
    b.setAttribute("height", hBad); b.setAttribute("fill", "#cf222e");
    return [a, b];
  });
  const total = chart.points.reduce((n, p) => [n[0] + p.ok, n[1] + p.bad], [0, 0]);
  svg.setAttribute("aria-label", `Since this page opened: ${total[0]} completed, ${total[1]} failed`);
  svg.replaceChildren(...bars);
}

// ---- jobs ----
function jobQuery() {
  const form = new FormData($("job-filters"));
  const params = new URLSearchParams();
  for (const [k, v] of form.entries()) {
    if (!v) continue;
    params.set(k, k.startsWith("created_") ? new Date(v).toISOString() : String(v).trim());
  }
  params.set("limit", "50");
  return params;
}

function jobRow(j) {
  const link = el("a", { href: "#job/" + j.id }, j.id);
  return el("tr", { "data-job": j.id },
    el("td", { "data-label": "Job" }, link),
    el("td", { "data-label": "State" }, badge(j.state)),
    el("td", { "data-label": "Printer" }, j.printer_id),
    el("td", { "data-label": "Tenant" }, j.tenant || ""),
    el("td", { "data-label": "Reason" }, j.error ? `${j.error.code}: ${j.error.message}` : j.state_reason || ""),
    el("td", { "data-label": "Created" }, when(j.created_at)));
}

async function showJobs(more) {
  const params = jobQuery();
  if (more && jobsCursor) params.set("cursor", jobsCursor);
  const page = await api("/v1/jobs?" + params);
  const rows = page.items.map(jobRow);
  if (more) $("job-rows").append(...rows); else $("job-rows").replaceChildren(...rows);
  jobsCursor = page.next_cursor || null;
  $("more-jobs").hidden = !jobsCursor;
}

async function showJob(id) {
  const [job, events] = await Promise.all([
    api(`/v1/jobs/${encodeURIComponent(id)}`),
    api(`/v1/jobs/${encodeURIComponent(id)}/events`),
  ]);
  $("job-title").replaceChildren("Job ", el("code", {}, job.id), " ", badge(job.state));
  $("job-facts").replaceChildren(...facts([
    ["state", job.state], ["reason", job.state_reason], ["printer", job.printer_id], ["pool", job.pool_id],
    ["converted", job.converted_from ? `from ${job.converted_from}, ${job.page_count} pages rendered` : ""],
    ["tenant", job.tenant],
    ["source", job.source], ["vendor task", job.vendor_task_id], ["vendor status", job.vendor_status],
    ["idempotency key", job.idempotency_key], ["attempts", job.attempts],
    ["error", job.error ? `${job.error.code}${job.error.vendor_code ? " (vendor " + job.error.vendor_code + ")" : ""}: ${job.error.message}` : ""],
    ["created", when(job.created_at)], ["updated", when(job.updated_at)],
  ]).childNodes);
  const items = events.items.map((e) => el("li", { class: "event" },
    el("div", {}, el("strong", {}, e.kind), " · ", e.source, " · ",
      e.from_state ? `${e.from_state} → ${e.to_state}` : e.to_state),
    el("div", { class: "when" }, when(e.at)),
    e.reason ? el("div", {}, "reason: ", e.reason) : null,
    e.message ? el("div", {}, e.message) : null,
    e.vendor_payload ? el("details", { open: true }, el("summary", {}, "Vendor payload"),
      el("pre", { tabindex: "0" }, JSON.stringify(e.vendor_payload, null, 2))) : null));
  $("timeline").replaceChildren(...items);
}

// ---- unconfirmed ----
async function showUnconfirmed() {
  const page = await api("/v1/jobs?state=unconfirmed&limit=200");
  const items = page.items.map((j) => {
    const note = el("input", { id: "note-" + j.id, name: "note", placeholder: "what you saw at the printer" });
    const resolve = (outcome) => async () => {
      try {
        await api(`/v1/jobs/${encodeURIComponent(j.id)}/resolve`,
          { method: "POST", body: JSON.stringify({ outcome, note: note.value || undefined }) });
        say(`Job ${j.id} resolved as ${outcome.replace("_", " ")}.`);
        await refresh();
      } catch (err) {
        say(`Could not resolve job ${j.id}: ${err.message}`, true);
      }
    };
    return el("li", { class: "card", "data-health": "degraded", "data-job": j.id },
      el("h3", {}, el("a", { href: "#job/" + j.id }, j.id.slice(0, 8) + "…"), badge(j.state)),
      facts([["printer", j.printer_id], ["tenant", j.tenant], ["since", when(j.updated_at)],
             ["why", j.error ? j.error.message : j.state_reason]]),
      el("div", { class: "resolve" },
        el("label", { for: "note-" + j.id }, "Note"), note,
        el("div", { class: "buttons" },
          el("button", { type: "button", class: "primary", onclick: resolve("printed") }, "It printed"),
          el("button", { type: "button", onclick: resolve("not_printed") }, "It did not print"))));
  });
  $("unconfirmed-list").replaceChildren(...(items.length ? items : [el("li", {}, "Nothing unconfirmed.")]));
}

async function countUnconfirmed() {
  try {
    const page = await api("/v1/jobs?state=unconfirmed&limit=200");
    $("unconfirmed-count").textContent = page.items.length ? String(page.items.length) : "";
  } catch { /* shown by the view's own refresh */ }
}

// ---- routing ----
function route() {
  const hash = location.hash.replace(/^#/, "");
  if (!key()) return { view: "signin" };
  if (hash.startsWith("job/")) return { view: "job", id: decodeURIComponent(hash.slice(4)) };
  if (["printers", "jobs", "unconfirmed"].includes(hash)) return { view: hash };
  return { view: "printers" };
}

async function refresh(focus) {
  const r = route();
  for (const section of document.querySelectorAll("main > section")) section.hidden = section.id !== "view-" + r.view;
  $("nav").hidden = r.view === "signin";
  for (const a of document.querySelectorAll("nav a")) {
    if (a.dataset.view === r.view) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
  }
  if (focus) $("main").focus();
  if (r.view === "signin") return;
  try {
    if (r.view === "printers") await showPrinters();
    else if (r.view === "jobs") { if (focus) await showJobs(false); else await refreshJobs(); }
    else if (r.view === "job") await showJob(r.id);
    else if (r.view === "unconfirmed") await showUnconfirmed();
    await countUnconfirmed();
    if ($("status").className === "error" && !focus) say("");
  } catch (err) {
    if (err.message !== "unauthorized") say(err.message, true);
  }
}

// Live updates of the job list without losing extra pages: re-read the first page only
// when no extra page was loaded.
async function refreshJobs() {
  if ($("job-rows").children.length <= 50) await showJobs(false);
}

function startPolling() {
  clearInterval(timer);
  timer = setInterval(() => { if (!document.hidden) refresh(false); }, POLL_MS);
}

function signOut(message) {
  sessionStorage.removeItem(KEY);
  clearInterval(timer);
  location.hash = "";
  refresh(true);
  say(message || "Signed out.");
}

document.addEventListener("DOMContentLoaded", () => {
  $("signin-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    sessionStorage.setItem(KEY, $("api-key").value.trim());
    $("api-key").value = "";
    try {
      await api("/v1/printers");
      say("Signed in.");
      location.hash = "#printers";
      startPolling();
      await refresh(true);
    } catch (err) {
      if (err.message !== "unauthorized") { sessionStorage.removeItem(KEY); say(err.message, true); }
    }
  });
  $("sign-out").addEventListener("click", () => signOut());
  $("job-filters").addEventListener("submit", (e) => { e.preventDefault(); showJobs(false).catch((err) => say(err.message, true)); });
  $("job-filters").addEventListener("reset", () => setTimeout(() => showJobs(false).catch((err) => say(err.message, true))));
  $("more-jobs").addEventListener("click", () => showJobs(true).catch((err) => say(err.message, true)));
  window.addEventListener("hashchange", () => refresh(true));
  if (key()) startPolling();
  refresh(false);
});
