// PropBot status page: polls the same API every client uses, with the operator's own token.
// Every text from the server goes into the page through textContent (el() below), never as HTML:
// a client order id, a hold reason or a journal row cannot inject markup or script.
"use strict";

const TOKEN_KEY = "propbot.token";
const TICK_MS = 1000; // /api/status once a second; the other panels when the journal moved
const FULL_EVERY = 5; // ... and every 5th tick regardless (approval expiry is not a journal row)
const KEEP_FILLS = 50;
const KEEP_JOURNAL = 25;
const FILLS_WINDOW = 1000; // journal rows looked back per refresh for new fills

const state = {
  me: null, // {id, role, permissions}
  lastSeq: null,
  ticks: 0,
  timer: null,
  fillsCursor: null, // journal seq after which the next fills come
  fills: [],
  journalCursor: null,
  journal: [],
  approvals: true, // false once /api/approvals answered 404: the endpoint is not there
  requests: 0,
};

const $ = (id) => document.getElementById(id);

function el(tag, props, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (key === "class") node.className = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function text(id, value) {
  $(id).textContent = value === null || value === undefined || value === "" ? "—" : String(value);
}

function rows(id, items, render, empty) {
  const body = $(id);
  const out = items.map(render);
  if (out.length === 0) out.push(el("tr", {}, el("td", { colspan: "10", class: "muted" }, empty)));
  body.replaceChildren(...out);
}

// -- the API ---------------------------------------------------------------------------------

class Unauthorized extends Error {}

async function api(method, path, body) {
  const token = sessionStorage.getItem(TOKEN_KEY);
  const headers = { Authorization: `Bearer ${token}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  state.requests += 1;
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    cache: "no-store",
    credentials: "omit",
  });
  let data = null;
  try {
    data = await response.json();
  } catch (_err) {
    data = null;
  }
  if (response.status === 401) throw new Unauthorized((data && data.detail) || "the token is not valid");
  return { status: response.status, data };
}

function refusal(result) {
  const data = result.data || {};
  const detail = typeof data.detail === "string" ? `: ${data.detail}` : "";
  return `${result.status} ${data.reason || "error"}${detail}`;
}

// -- login -----------------------------------------------------------------------------------

function showLogin(error) {
  stop();
  sessionStorage.removeItem(TOKEN_KEY);
  state.me = null;
  $("app").hidden = true;
  $("login").hidden = false;
  text("login-error", error || "");
  $("token").value = "";
  $("token").focus();
}

async function signIn(token) {
  sessionStorage.setItem(TOKEN_KEY, token);
  try {
    const who = await api("GET", "/api/whoami");
    if (who.status !== 200) {
      showLogin(refusal(who));
      return;
    }
    state.me = who.data;
  } catch (err) {
    showLogin(err instanceof Unauthorized ? "That token is not valid." : `The server cannot be reached (${err})`);
    return;
  }
  $("login").hidden = true;
  $("app").hidden = false;
  text("who", `${state.me.id} (${state.me.role})`);
  const may = (p) => state.me.permissions.includes(p);
  $("admin-actions").hidden = !may("session");
  $("journal-panel").hidden = !may("audit");
  state.lastSeq = null;
  state.ticks = 0;
  state.fills = [];
  state.fillsCursor = null;
  state.journal = [];
  state.journalCursor = null;
  start();
}

// -- polling ---------------------------------------------------------------------------------

function start() {
  stop();
  tick();
}

function stop() {
  if (state.timer !== null) clearTimeout(state.timer);
  state.timer = null;
}

async function tick() {
  state.timer = null;
  try {
    const status = await api("GET", "/api/status");
    if (status.status === 200) {
      renderStatus(status.data);
      const seq = journalSeq(status.data);
      if (seq !== state.lastSeq || state.ticks % FULL_EVERY === 0) {
        await refreshPanels(seq);
        state.lastSeq = seq;
      }
      text("refreshed", `updated ${new Date().toLocaleTimeString()}`);
    } else {
      text("refreshed", `status: ${refusal(status)}`);
    }
  } catch (err) {
    if (err instanceof Unauthorized) {
      showLogin("Signed out: the server refused the token (401).");
      return;
    }
    text("refreshed", `disconnected (${err.message || err})`);
  }
  state.ticks += 1;
  if (state.me !== null && !document.hidden) state.timer = setTimeout(tick, TICK_MS);
}

document.addEventListener("visibilitychange", () => {
  // A hidden tab costs the server nothing; it catches up as soon as it is shown again
  if (state.me !== null && !document.hidden && state.timer === null) tick();
});

function journalSeq(status) {
  const journal = status.components && status.components.journal;
  return journal && journal.detail ? journal.detail.last_seq : null;
}

async function refreshPanels(lastSeq) {
  const may = (p) => state.me.permissions.includes(p);
  const jobs = [loadOrders(), loadFills(lastSeq), loadPositions()];
  if (may("audit")) jobs.push(loadJournal(lastSeq));
  if (state.approvals) jobs.push(loadApprovals());
  const results = await Promise.allSettled(jobs);
  const failed = results.find((r) => r.status === "rejected");
  if (failed) throw failed.reason;
}

// -- panels ----------------------------------------------------------------------------------

function renderStatus(s) {
  const session = s.session || {};
  const badge = $("state");
  badge.textContent = session.state || "?";
  badge.dataset.state = session.state || "";
  const overall = $("overall");
  overall.textContent = s.status;
  overall.dataset.level = s.status;
  text("session-state", session.state);
  text("session-venue", `${s.profile} / ${s.venue}`);
  text("session-safe", s.safe_mode ? "on (no live orders)" : "off");
  text("hold-reason", session.state === "HOLD" ? session.hold_reason : "");
  text("session-since", session.since ? new Date(session.since).toLocaleString() : "");
  text("session-kill", session.cancel_all ? "engaged: open orders are being cancelled" : "off");
  $("resume").disabled = session.state !== "HOLD";
  $("disarm").disabled = !(session.state === "ARMED" || session.state === "LIVE");
  const names = Object.keys(s.components || {}).sort();
  rows("components", names, (name) => {
    const c = s.components[name];
    return el("tr", { dataset: { component: name } },
      el("td", {}, name),
      el("td", {}, el("span", { class: "level", dataset: { level: c.status } }, c.status)),
      el("td", { class: "detail" }, summary(c.detail)));
  }, "no components");
}

function summary(detail) {
  if (detail === null || detail === undefined) return "";
  const out = typeof detail === "string" ? detail : JSON.stringify(detail);
  return out.length > 300 ? `${out.slice(0, 300)}…` : out;
}

async function loadOrders() {
  const r = await api("GET", "/api/orders?open=true&limit=200");
  if (r.status !== 200) {
    rows("orders", [], null, `orders: ${refusal(r)}`);
    return;
  }
  const mayTrade = state.me.permissions.includes("trade");
  rows("orders", r.data.orders, (o) => el("tr", { dataset: { cid: o.clientOrderId } },
    el("td", { class: "mono" }, o.clientOrderId),
    el("td", {}, o.symbol),
    el("td", {}, o.side),
    el("td", {}, o.type),
    el("td", { class: "num" }, o.qty),
    el("td", { class: "num" }, o.price),
    el("td", { class: "num" }, o.filledQty),
    el("td", { class: "order-state" }, o.state),
    el("td", {}, o.mode),
    el("td", {}, mayTrade ? el("button", {
      type: "button", class: "cancel", onclick: () => cancelOrder(o),
    }, "Cancel") : null)), "no open orders");
}

async function loadFills(lastSeq) {
  // First load: the whole history (at most 20 pages); then one call for what is new, never reaching
  // further back than the journal's last FILLS_WINDOW rows (a busy engine must not cost more per tick)
  const first = state.fillsCursor === null;
  let cursor = first ? 0 : Math.max(state.fillsCursor, (lastSeq || 0) - FILLS_WINDOW);
  for (let page = 0; page < (first ? 20 : 1); page += 1) {
    const r = await api("GET", `/api/fills?after_seq=${cursor}&limit=1000`);
    if (r.status !== 200) {
      rows("fills", [], null, `fills: ${refusal(r)}`);
      return;
    }
    const items = r.data.fills || [];
    state.fills = state.fills.concat(items).slice(-KEEP_FILLS);
    if (items.length) cursor = items[items.length - 1].seq;
    if (r.data.next_after_seq === null || r.data.next_after_seq === undefined) break;
    cursor = r.data.next_after_seq;
  }
  state.fillsCursor = cursor;
  rows("fills", state.fills.slice().reverse(), (f) => el("tr", {},
    el("td", { title: f.time }, clock(f.time)),
    el("td", {}, f.symbol),
    el("td", {}, f.side),
    el("td", { class: "num" }, f.qty),
    el("td", { class: "num" }, f.price),
    el("td", { class: "num" }, `${f.commission} ${f.commissionAsset || ""}`),
    el("td", { class: "mono" }, f.clientOrderId)), "no fills yet");
}

async function loadPositions() {
  const r = await api("GET", "/api/positions");
  if (r.status !== 200) {
    rows("positions", [], null, `positions: ${refusal(r)}`);
    return;
  }
  rows("positions", r.data.positions || [], (p) => el("tr", { dataset: { asset: p.asset } },
    el("td", {}, p.asset),
    el("td", { class: "num position-qty" }, p.quantity),
    el("td", { class: "num" }, `${p.avg_cost} ${p.cost_asset || ""}`),
    el("td", { class: "num" }, `${p.realized_pnl} ${p.cost_asset || ""}`),
    el("td", { class: "num" }, fees(p.fees))), "no positions");
  text("fees-total", `fees in total: ${fees(r.data.fees_total) || "none"} (as of journal seq ${r.data.as_of_seq})`);
}

function clock(iso) {
  // The journal's UTC timestamps, as time of day to the millisecond (the full value is the tooltip)
  return typeof iso === "string" && iso.length > 23 ? `${iso.slice(11, 23)}Z` : iso;
}

function fees(byAsset) {
  return Object.entries(byAsset || {}).map(([asset, qty]) => `${qty} ${asset}`).join(", ");
}

async function loadJournal(lastSeq) {
  // Only the newest rows: on a busy engine the cursor jumps ahead instead of paging through everything
  const from = Math.max(state.journalCursor || 0, (lastSeq || 0) - KEEP_JOURNAL);
  const r = await api("GET", `/api/journal?after_seq=${from}&limit=${KEEP_JOURNAL}`);
  if (r.status !== 200) {
    rows("journal", [], null, `journal: ${refusal(r)}`);
    return;
  }
  state.journal = state.journal.concat(r.data.items).slice(-KEEP_JOURNAL);
  state.journalCursor = r.data.next_after_seq;
  rows("journal", state.journal.slice().reverse(), (j) => el("tr", {},
    el("td", { class: "num" }, j.seq),
    el("td", { title: j.created_at }, clock(j.created_at)),
    el("td", {}, j.stream),
    el("td", { class: "mono" }, j.stream_id),
    el("td", {}, j.trigger),
    el("td", {}, j.to_state || ""),
    el("td", {}, j.actor),
    el("td", { class: "journal-reason" }, j.reason || "")), "no rows");
}

async function loadApprovals() {
  const r = await api("GET", "/api/approvals");
  if (r.status === 404 || r.status === 405) {
    state.approvals = false; // not served by this version
    $("approvals-panel").hidden = true;
    return;
  }
  if (r.status !== 200) {
    $("approvals-panel").hidden = true;
    return;
  }
  $("approvals-panel").hidden = false;
  // Open requests: PENDING (waiting for the approver's token) and APPROVED (waiting for arm to use it)
  const open = new Set(["PENDING", "APPROVED"]);
  const pending = (r.data.items || r.data.requests || []).filter((q) => open.has(String(q.status).toUpperCase()));
  rows("approvals", pending, (q) => el("tr", { dataset: { approval: q.id } },
    el("td", { class: "mono" }, q.id),
    el("td", {}, q.action),
    el("td", {}, q.requester),
    el("td", { class: "approval-status" }, q.status),
    el("td", {}, expires(q.expires_at))), "no pending requests");
}

function expires(value) {
  if (typeof value === "number") return new Date(value * 1000).toLocaleString();
  return value || "";
}

// -- actions: each asks first, then goes through the API like any client ---------------------

function confirmAction(question) {
  const dialog = $("confirm");
  text("confirm-text", question);
  return new Promise((resolve) => {
    const done = (answer) => {
      $("confirm-yes").onclick = null;
      $("confirm-no").onclick = null;
      dialog.close();
      resolve(answer);
    };
    $("confirm-yes").onclick = () => done(true);
    $("confirm-no").onclick = () => done(false);
    dialog.oncancel = () => done(false);
    dialog.showModal();
  });
}

async function act(question, method, path, body, describe) {
  if (!(await confirmAction(question))) return;
  try {
    const r = await api(method, path, body);
    text("message", r.status === 200 ? describe(r.data) : `Refused: ${refusal(r)}`);
    $("message").dataset.ok = r.status === 200 ? "true" : "false";
  } catch (err) {
    if (err instanceof Unauthorized) {
      showLogin("Signed out: the server refused the token (401).");
      return;
    }
    text("message", `Failed: ${err.message || err}`);
  }
  state.lastSeq = null;
  start();
}

function hold() {
  const reason = $("hold-reason-input").value.trim() || "operator";
  const cancelAll = $("hold-cancel-all").checked;
  const question = cancelAll
    ? "HOLD the session and cancel ALL open orders (including orders still in flight)?"
    : "HOLD the session? Open orders stay on the venue.";
  act(question, "POST", "/api/session/hold", { reason, cancel_all: cancelAll }, (data) => {
    const c = data.cancel_all;
    if (!c) return `Session on HOLD.`;
    return `Session on HOLD. Cancels requested: ${c.requested.length}, failed: ${c.failed.length}, ` +
      `in flight (cancelled once acknowledged): ${c.in_flight.length}, finished: ${c.finished.length}.`;
  });
}

function cancelOrder(order) {
  act(`Cancel order ${order.clientOrderId} (${order.side} ${order.qty} ${order.symbol})?`, "POST",
    "/api/live/cancel", { symbol: order.symbol, origClientOrderId: order.clientOrderId },
    (data) => `Order ${data.clientOrderId}: ${data.state}.`);
}

function wire() {
  $("login-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const token = $("token").value.trim();
    if (token) signIn(token);
  });
  $("logout").addEventListener("click", () => showLogin(""));
  $("hold").addEventListener("click", hold);
  $("resume").addEventListener("click", () => act("Resume the session (back to a SAFE state)?", "POST",
    "/api/session/resume", {}, (d) => `Session ${d.session.state}.`));
  $("disarm").addEventListener("click", () => act("Disarm the session (back to TESTNET)?", "POST",
    "/api/session/disarm", {}, (d) => `Session ${d.session.state}.`));
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) signIn(token);
  else showLogin("");
}

wire();
