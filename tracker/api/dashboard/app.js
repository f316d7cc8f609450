// Dashboard of one tenant: live SSE feed, stats charts, match view, tracking URLs and webhooks.
// The API key lives in `state.key` for the tab; "stay signed in" also keeps it in sessionStorage.

const STORAGE_KEY = "tracker.dashboard.key";
const MAX_FEED_ITEMS = 50;
const SVG_NS = "http://www.w3.org/2000/svg";

const state = { key: null, config: null, stream: null, typeCounts: new Map(), linkCounts: new Map() };

const $ = (id) => document.getElementById(id);

class ApiFailure extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

async function api(method, path, body) {
  const headers = { Authorization: `Bearer ${state.key}` };
  const init = { method, headers };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(`/api${path}`, init);
  } catch (error) {
    throw new ApiFailure(0, "network_error", `the API could not be reached: ${error.message}`);
  }
  let document = null;
  try {
    document = await response.json();
  } catch {
    document = null;
  }
  if (!response.ok) {
    const detail = document && document.error ? document.error : {};
    throw new ApiFailure(response.status, detail.code || `http_${response.status}`,
      detail.message || response.statusText || "the request failed");
  }
  return document;
}

function showError(elementId, error) {
  const element = $(elementId);
  if (error === null) {
    element.hidden = true;
    element.textContent = "";
    return;
  }
  element.hidden = false;
  element.textContent = error instanceof ApiFailure
    ? `Error ${error.code}: ${error.message}`
    : `Error: ${error.message}`;
}

function element(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (className) node.className = className;
  return node;
}

function button(label, onClick) {
  const node = element("button", label);
  node.type = "button";
  node.addEventListener("click", onClick);
  return node;
}

// Show the "empty" paragraph bound to a list, table or summary when it has no rows.
function refreshEmpty(containerId) {
  const container = $(containerId);
  const body = container.tBodies ? container.tBodies[0] : container;
  const empty = document.querySelector(`[data-empty-for="${containerId}"]`);
  const isEmpty = body.children.length === 0;
  if (empty) empty.hidden = !isEmpty;
  if (container.tagName === "TABLE") container.hidden = isEmpty;
}

function fillTable(tableId, rows) {
  const body = $(tableId).tBodies[0];
  body.replaceChildren(...rows);
  refreshEmpty(tableId);
}

function row(...cells) {
  const tr = document.createElement("tr");
  for (const cell of cells) {
    const td = document.createElement("td");
    if (cell instanceof Node) td.append(cell);
    else td.textContent = cell === null || cell === undefined ? "" : String(cell);
    tr.append(td);
  }
  return tr;
}

function formatTime(ms) {
  return ms === null || ms === undefined ? "-" : new Date(ms).toISOString().replace(".000Z", "Z");
}

function formatDuration(ms) {
  if (ms === null || ms === undefined) return "-";
  if (ms < 1000) return `${ms} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  if (ms < 3_600_000) return `${(ms / 60_000).toFixed(1)} min`;
  return `${(ms / 3_600_000).toFixed(1)} h`;
}

// ---- Charts: inline SVG bars, drawn with DOM calls so the CSP needs no inline styles.

function svg(tag, attributes) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(attributes || {})) node.setAttribute(name, String(value));
  return node;
}

function drawColumns(containerId, points, label) {
  const container = $(containerId);
  if (points.length === 0) {
    container.replaceChildren(element("p", "No events in this range.", "empty"));
    return;
  }
  const width = 640;
  const height = 220;
  const bottom = 40;
  const left = 44;
  const max = Math.max(...points.map((point) => point.value), 1);
  const step = (width - left) / points.length;

  const chart = svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", class: "bars" });
  chart.append(svg("title"));
  chart.firstChild.textContent = label;
  chart.append(svg("line", { x1: left, y1: height - bottom, x2: width, y2: height - bottom, class: "axis" }));
  const maxLabel = svg("text", { x: left - 6, y: 12, class: "tick", "text-anchor": "end" });
  maxLabel.textContent = String(max);
  chart.append(maxLabel);

  const labelEvery = Math.max(1, Math.ceil(points.length / 8));
  points.forEach((point, index) => {
    const barHeight = ((height - bottom - 16) * point.value) / max;
    const bar = svg("rect", {
      x: left + index * step + step * 0.1,
      y: height - bottom - barHeight,
      width: Math.max(step * 0.8, 1),
      height: barHeight,
      class: "bar",
    });
    const tip = svg("title");
    tip.textContent = `${point.label}: ${point.value}`;
    bar.append(tip);
    chart.append(bar);
    if (index % labelEvery === 0) {
      const text = svg("text", { x: left + index * step + step / 2, y: height - bottom + 16, class: "tick", "text-anchor": "middle" });
      text.textContent = point.short || point.label;
      chart.append(text);
    }
  });

  // Screen readers get the same numbers as a table.
  const table = element("table", null, "sr-only");
  table.append(element("caption", label));
  for (const point of points) table.append(row(point.label, point.value));
  container.replaceChildren(chart, table);
}

function drawBars(containerId, items) {
  const container = $(containerId);
  if (items.length === 0) {
    container.replaceChildren(element("p", "No events in this range.", "empty"));
    return;
  }
  const max = Math.max(...items.map((item) => item.value), 1);
  const list = element("ul", null, "hbars");
  for (const item of items) {
    const entry = element("li");
    const name = element("span", item.label, "hbar-label");
    const track = svg("svg", { viewBox: "0 0 100 10", preserveAspectRatio: "none", class: "hbar", "aria-hidden": "true" });
    track.append(svg("rect", { x: 0, y: 0, width: (100 * item.value) / max, height: 10, class: "bar" }));
    entry.append(name, track, element("span", item.value, "num"));
    list.append(entry);
  }
  container.replaceChildren(list);
}

// ---- Live feed over the SSE gateway.

function bump(counts, name) {
  counts.set(name, (counts.get(name) || 0) + 1);
}

function renderTicker(tableId, counts) {
  const sorted = [...counts.entries()].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1));
  fillTable(tableId, sorted.map(([name, count]) => {
    const tr = row(name, count);
    tr.lastChild.className = "num";
    return tr;
  }));
}

function onLiveEvent(message) {
  let event;
  try {
    event = JSON.parse(message.data);
  } catch {
    return;
  }
  const params = event.params || {};
  bump(state.typeCounts, event.event_type || "(none)");
  if (params.tu_id) bump(state.linkCounts, params.tu_id);
  renderTicker("ticker-types", state.typeCounts);
  renderTicker("ticker-links", state.linkCounts);

  const feed = $("live-feed");
  const paramSummary = Object.entries(params).filter(([name]) => name !== "key_prefix").slice(0, 4)
    .map(([name, value]) => `${name}=${value}`).join(" ");
  const item = element("li");
  item.append(element("strong", event.event_type), ` ${formatTime(event.timestamp)} `, element("span", paramSummary, "meta"));
  feed.prepend(item);
  while (feed.children.length > MAX_FEED_ITEMS) feed.lastElementChild.remove();
  refreshEmpty("live-feed");
}

function setLiveStatus(text, kind) {
  const status = $("live-status");
  status.textContent = text;
  status.dataset.kind = kind;
}

function openStream() {
  closeStream();
  const url = `${state.config.sse_url}/events/stream?key=${encodeURIComponent(state.key)}`;
  setLiveStatus("connecting", "pending");
  const stream = new EventSource(url);
  stream.addEventListener("open", () => setLiveStatus("live", "ok"));
  stream.addEventListener("message", onLiveEvent);
  stream.addEventListener("overflow", () => setLiveStatus("too slow: the gateway dropped this stream, reconnecting", "error"));
  stream.addEventListener("error", () => {
    setLiveStatus(stream.readyState === EventSource.CLOSED
      ? `closed: the SSE gateway at ${state.config.sse_url} rejected the stream or is unreachable`
      : "reconnecting", "error");
  });
  state.stream = stream;
}

function closeStream() {
  if (state.stream) state.stream.close();
  state.stream = null;
}

// ---- Charts page.

function tierQuery(tier) {
  return tier ? `&tier=${encodeURIComponent(tier)}` : "";
}

async function loadCharts() {
  const hours = $("charts-range").value;
  const bucket = $("charts-bucket").value;
  const tier = $("charts-tier").value;
  const param = $("charts-param").value.trim();
  $("charts-bucket-name").textContent = bucket;
  $("charts-param-name").textContent = param || "event type";
  showError("charts-error", null);
  const base = `/events/stats?hours=${encodeURIComponent(hours)}${tierQuery(tier)}`;
  try {
    const overTime = await api("GET", `${base}&group_by=${bucket}`);
    const points = overTime.rows.map((entry) => ({ label: entry[bucket], short: entry[bucket].slice(bucket === "hour" ? 11 : 5), value: entry.count }))
      .sort((a, b) => (a.label < b.label ? -1 : 1));
    drawColumns("charts-time", points, `Events per ${bucket}, ${overTime.total} in total`);
    $("charts-meta").textContent = `${overTime.total} events; answered by the ${overTime.tier} tier, data through ${overTime.data_through || "-"}`;

    const groupKey = param ? `param:${param}` : "event_type";
    const breakdown = await api("GET", `${base}&group_by=${encodeURIComponent(groupKey)}`);
    drawBars("charts-breakdown", breakdown.rows.map((entry) => ({
      label: entry[groupKey] === null ? "(no value)" : entry[groupKey], value: entry.count,
    })));
  } catch (error) {
    showError("charts-error", error);
  }
}

// ---- Match page.

function histogram(deltas, binCount) {
  const max = Math.max(...deltas);
  const min = Math.min(...deltas);
  const width = Math.max(1, Math.ceil((max - min + 1) / binCount));
  const bins = Array.from({ length: binCount }, (_, index) => ({ from: min + index * width, value: 0 }));
  for (const delta of deltas) bins[Math.min(binCount - 1, Math.floor((delta - min) / width))].value += 1;
  return bins.filter((bin) => bin.from <= max).map((bin) => ({
    label: `${formatDuration(bin.from)} to ${formatDuration(bin.from + width)}`,
    short: formatDuration(bin.from),
    value: bin.value,
  }));
}

async function loadMatch() {
  const form = $("match-form");
  showError("match-error", null);
  if (!form.reportValidity()) return;
  const values = new FormData(form);
  const query = new URLSearchParams({ limit: "1000" });
  for (const name of ["trigger", "result", "on", "window", "hours"]) query.set(name, values.get(name));
  if (values.get("tier")) query.set("tier", values.get("tier"));
  try {
    const answer = await api("GET", `/events/match?${query}`);
    const summary = answer.summary;
    const deltas = summary.time_delta_ms || {};
    const entries = [
      ["Triggers", summary.triggers], ["Results", summary.results], ["Matched", summary.matched],
      ["Match rate", `${(summary.match_rate * 100).toFixed(1)} %`],
      ["p50", formatDuration(deltas.p50)], ["p90", formatDuration(deltas.p90)], ["p99", formatDuration(deltas.p99)],
      ["Min", formatDuration(deltas.min)], ["Max", formatDuration(deltas.max)], ["Tier", answer.tier],
    ];
    const list = $("match-summary");
    list.replaceChildren(...entries.flatMap(([name, value]) => {
      const wrapper = element("div");
      wrapper.append(element("dt", name), element("dd", value));
      return [wrapper];
    }));
    refreshEmpty("match-summary");
    const pairs = answer.pairs.map((pair) => pair.time_delta_ms);
    if (pairs.length === 0) $("match-histogram").replaceChildren(element("p", "No matched pairs in this range.", "empty"));
    else drawColumns("match-histogram", histogram(pairs, 12), "Pairs per time-delta bucket");
  } catch (error) {
    showError("match-error", error);
  }
}

// ---- Tracking URLs page.

async function updateLink(tuId, change, statusNode) {
  showError("links-error", null);
  try {
    await api("PATCH", `/tracking-urls/${encodeURIComponent(tuId)}`, change);
    await loadLinks();
    if (statusNode) statusNode.textContent = "Saved.";
  } catch (error) {
    showError("links-error", error);
  }
}

function linkRow(link) {
  const actions = element("div", null, "actions");
  const rotateLabel = element("label", "New destination", "sr-only");
  const rotateInput = element("input");
  rotateInput.type = "url";
  rotateInput.id = `rotate-${link.tu_id}`;
  rotateLabel.htmlFor = rotateInput.id;
  rotateInput.placeholder = "https://new.example.com/";
  rotateInput.setAttribute("aria-label", `New destination for ${link.tu_id}`);
  const rotate = button("Rotate", () => {
    if (!rotateInput.value) {
      showError("links-error", new Error("enter the new destination URL first"));
      rotateInput.focus();
      return;
    }
    updateLink(link.tu_id, { destination: rotateInput.value });
  });
  rotate.setAttribute("aria-label", `Rotate destination of ${link.tu_id}`);
  const nextStatus = link.status === "active" ? "disabled" : "active";
  const toggle = button(link.status === "active" ? "Disable" : "Enable", () => updateLink(link.tu_id, { status: nextStatus }));
  toggle.setAttribute("aria-label", `${toggle.textContent} ${link.tu_id}`);
  actions.append(rotateLabel, rotateInput, rotate, toggle);
  const tr = row(link.tu_id, link.name, link.destination, link.status, actions);
  tr.dataset.tuId = link.tu_id;
  return tr;
}

async function loadLinks() {
  try {
    const answer = await api("GET", "/tracking-urls");
    fillTable("links-table", answer.tracking_urls.map(linkRow));
  } catch (error) {
    showError("links-error", error);
  }
}

async function createLink(event) {
  event.preventDefault();
  const form = $("links-create");
  showError("links-error", null);
  if (!form.reportValidity()) return;
  const body = { destination: $("links-destination").value };
  if ($("links-name").value) body.name = $("links-name").value;
  try {
    await api("POST", "/tracking-urls", body);
    form.reset();
    await loadLinks();
  } catch (error) {
    showError("links-error", error);
  }
}

async function signUrls(event) {
  event.preventDefault();
  const form = $("links-sign");
  showError("links-error", null);
  if (!form.reportValidity()) return;
  try {
    const answer = await api("POST", "/tracking-urls/sign", { destination: $("sign-destination").value });
    $("sign-signed").value = answer.signed_url;
    $("sign-encrypted").value = answer.encrypted_url;
    $("sign-output").hidden = false;
    $("sign-status").textContent = `Built with AES key ${answer.aes_key_id}.`;
  } catch (error) {
    showError("links-error", error);
  }
}

async function copyField(event) {
  const target = event.target.closest("[data-copy]");
  if (!target) return;
  const field = $(target.dataset.copy);
  try {
    await navigator.clipboard.writeText(field.value);
    $("sign-status").textContent = "Copied to the clipboard.";
  } catch {
    field.select();
    $("sign-status").textContent = "The browser denied clipboard access; the URL is selected, press Ctrl+C.";
  }
}

// ---- Webhooks page.

async function loadDeliveries(endpoint) {
  $("deliveries-title").textContent = `Recent deliveries to ${endpoint.url}`;
  try {
    const answer = await api("GET", `/webhooks/${encodeURIComponent(endpoint.endpoint_id)}/deliveries?limit=50`);
    fillTable("deliveries-table", answer.deliveries.map((delivery) =>
      row(delivery.event_id, delivery.status, delivery.attempts, delivery.last_error)));
  } catch (error) {
    showError("webhooks-error", error);
  }
}

async function replay(delivery) {
  try {
    await api("POST", `/webhook-deliveries/${encodeURIComponent(delivery.delivery_id)}/replay`);
    $("replay-status").textContent = `Delivery ${delivery.delivery_id} queued again.`;
    await loadWebhooks();
  } catch (error) {
    showError("webhooks-error", error);
  }
}

async function loadWebhooks() {
  showError("webhooks-error", null);
  try {
    const endpoints = (await api("GET", "/webhooks")).endpoints;
    fillTable("webhooks-table", endpoints.map((endpoint) => {
      const show = button("Show", () => loadDeliveries(endpoint));
      show.setAttribute("aria-label", `Show deliveries to ${endpoint.url}`);
      return row(endpoint.url, endpoint.event_types.join(", ") || "all", endpoint.status, show);
    }));
    const dead = (await api("GET", "/webhook-dead-letters?limit=50")).deliveries;
    fillTable("dead-table", dead.map((delivery) => {
      const again = button("Replay", () => replay(delivery));
      again.setAttribute("aria-label", `Replay delivery ${delivery.delivery_id}`);
      return row(delivery.event_id, delivery.endpoint_id, delivery.attempts, delivery.last_error, again);
    }));
  } catch (error) {
    showError("webhooks-error", error);
  }
}

// ---- Navigation and sign-in.

const LOADERS = { live: openStream, charts: loadCharts, match: () => {}, links: loadLinks, webhooks: loadWebhooks };

function showPage(name) {
  for (const page of document.querySelectorAll(".page")) page.hidden = page.id !== `page-${name}`;
  for (const tab of document.querySelectorAll("#nav [data-page]")) {
    if (tab.dataset.page === name) tab.setAttribute("aria-current", "page");
    else tab.removeAttribute("aria-current");
  }
  if (name !== "live") closeStream();
  if (LOADERS[name]) LOADERS[name]();
}

async function signIn(key, remember) {
  state.key = key;
  try {
    await api("GET", "/tracking-urls");
  } catch (error) {
    state.key = null;
    sessionStorage.removeItem(STORAGE_KEY);
    throw error;
  }
  if (remember) sessionStorage.setItem(STORAGE_KEY, key);
  $("nav").hidden = false;
  showPage("live");
  $("main").focus();
}

function signOut() {
  closeStream();
  state.key = null;
  sessionStorage.removeItem(STORAGE_KEY);
  state.typeCounts.clear();
  state.linkCounts.clear();
  $("nav").hidden = true;
  for (const page of document.querySelectorAll(".page")) page.hidden = page.id !== "page-signin";
  $("signin-key").value = "";
  $("signin-key").focus();
}

async function onSignIn(event) {
  event.preventDefault();
  showError("signin-error", null);
  const key = $("signin-key").value.trim();
  if (!key) {
    showError("signin-error", new Error("enter a tenant API key"));
    return;
  }
  try {
    await signIn(key, $("signin-stay").checked);
    $("signin-key").value = "";
  } catch (error) {
    showError("signin-error", error);
    $("signin-key").focus();
  }
}

async function start() {
  for (const id of ["ticker-types", "ticker-links", "live-feed", "links-table", "webhooks-table", "deliveries-table", "dead-table", "match-summary"]) {
    refreshEmpty(id);
  }
  $("signin-form").addEventListener("submit", onSignIn);
  $("sign-out").addEventListener("click", signOut);
  for (const tab of document.querySelectorAll("#nav [data-page]")) {
    tab.addEventListener("click", () => showPage(tab.dataset.page));
  }
  $("charts-form").addEventListener("submit", (event) => { event.preventDefault(); loadCharts(); });
  for (const id of ["charts-range", "charts-bucket", "charts-tier"]) $(id).addEventListener("change", loadCharts);
  $("match-form").addEventListener("submit", (event) => { event.preventDefault(); loadMatch(); });
  $("links-create").addEventListener("submit", createLink);
  $("links-sign").addEventListener("submit", signUrls);
  $("links-sign").addEventListener("click", copyField);

  const boot = $("boot");
  try {
    const response = await fetch("/dashboard/config.json");
    if (!response.ok) throw new Error(`loading config.json failed with HTTP ${response.status}`);
    state.config = await response.json();
  } catch (error) {
    boot.textContent = `The dashboard could not load its configuration: ${error.message}`;
    boot.className = "error";
    return;
  }
  boot.hidden = true;
  const saved = sessionStorage.getItem(STORAGE_KEY);
  signOut();
  if (saved) {
    try {
      await signIn(saved, true);
    } catch (error) {
      showError("signin-error", error);
    }
  }
}

start();
