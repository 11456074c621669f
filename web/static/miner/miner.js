// The miner's page: figures from GET /status (docs/API.md, "Miner local
// API"), controls through POST /pause, /resume, /threads and /pool.
"use strict";

(function () {
  const V = window.Vision;
  const POLL_MS = 2000;
  const TOKEN_KEY = "vision-miner-api-token";
  const $ = (id) => document.getElementById(id);
  let chart = null;
  let chartDevices = "";
  let refreshes = 0;
  // Set while the owner has typed a thread count not sent yet.
  let threadsEdited = false;
  let refreshing = false;

  const setField = V.setField;

  function clock(secs) {
    const pad = (n) => String(n).padStart(2, "0");
    return `${pad(Math.floor(secs / 3600))}:${pad(Math.floor(secs / 60) % 60)}:${pad(secs % 60)}`;
  }

  const devices = new V.Table($("devices-table"), [
    { key: "name", label: "Device", cell: (d) => V.esc(d.name) },
    { key: "state", label: "State", value: (d) => (d.disabled ? 0 : d.sitting_out ? 1 : 2), cell: (d) => (d.disabled ? `<span class="bad">disabled</span>` : d.sitting_out ? `<span class="warn">idle: job too large</span>` : `<span class="ok">mining</span>`) },
    { key: "h10s", label: "10 s", num: true, value: (d) => d.hashrate.h10s, cell: (d) => V.rate(d.hashrate.h10s) },
    { key: "h60s", label: "60 s", num: true, value: (d) => d.hashrate.h60s, cell: (d) => V.rate(d.hashrate.h60s) },
    { key: "hashes", label: "Hashes", num: true, cell: (d) => V.count(d.hashes) },
  ], "name", false);

  const pools = new V.Table($("pools-table"), [
    { key: "index", label: "#", num: true, cell: (p) => String(p.index + 1) },
    { key: "url", label: "Pool", cell: (p) => `<span class="mono">${V.esc(p.url)}</span>` },
    { key: "role", label: "", cell: (p) => [p.active ? `<span class="ok">in use</span>` : "", p.primary ? "primary" : ""].filter(Boolean).join(", ") },
  ], "index", false);

  function render(s) {
    $("version").textContent = s.version;
    setField("paused", s.paused ? "PAUSED" : "mining", s.paused);
    $("state").className = s.paused ? "bad" : "ok";
    for (const key of ["h10s", "h60s", "h15m"]) setField(`hashrate.${key}`, V.rate(s.hashrate[key]), s.hashrate[key]);
    setField("uptime_secs", clock(s.uptime_secs), s.uptime_secs);
    for (const key of ["accepted", "rejected", "stale", "blocks", "pending", "dropped"]) setField(key, V.count(s[key]), s[key]);
    const c = s.connection;
    setField("connection.mode", c.mode || "-", c.mode);
    setField("connection.url", c.url || "-", c.url);
    const linkState = c.connected ? "connected" : c.last_error ? `failing: ${c.last_error}${c.retry_in_secs ? ` (retry in ${c.retry_in_secs} s)` : ""}` : "connecting";
    setField("connection.state", linkState, c.connected);
    for (const key of ["height", "share_difficulty", "network_difficulty"]) setField(`connection.${key}`, c[key] == null ? "-" : V.count(c[key]), c[key] ?? "");
    devices.set(s.devices);
    pools.set((c.pools || []).map((url, index) => ({ url, index, primary: index === c.primary, active: index === c.active })));
    if (!threadsEdited && document.activeElement !== $("threads-input")) $("threads-input").value = s.cpu_threads || "";
    $("threads-input").disabled = !s.cpu_threads;

    const names = s.devices.map((d) => d.name).join("|");
    if (!chart || names !== chartDevices) {
      chart?.destroy();
      chart = new V.Chart($("chart-devices"), s.devices.map((d) => ({ label: d.name })), V.rate);
      chartDevices = names;
    }
    const h = s.history;
    chart.set([h.map((p) => p.time_ms)].concat(s.devices.map((d, i) => h.map((p) => p.devices[i] ?? null))));
  }

  // One at a time, so answers never render out of order.
  async function refresh() {
    if (refreshing) return;
    refreshing = true;
    let status = null;
    try {
      // The token, where one is set: reaching the miner by another name
      // than a loopback one needs it for the status too.
      const token = sessionStorage.getItem(TOKEN_KEY);
      status = await V.api("/status", token ? { headers: { Authorization: "Bearer " + token } } : undefined);
      $("offline").classList.add("hidden");
    } catch (e) {
      $("offline").textContent = e.status === 0 || e.status >= 500
        ? "The miner is not answering (stopped?). Retrying..."
        : `The miner refused this page: ${e.message}` + (e.status === 403 ? " (open it at http://127.0.0.1:PORT/, or enter the API token below)" : "");
      $("offline").classList.remove("hidden");
    }
    try {
      if (status) {
        render(status);
        refreshes += 1;
        $("updated").textContent = "updated " + new Date().toLocaleTimeString();
        $("updated").dataset.refreshes = String(refreshes);
      }
    } finally {
      refreshing = false;
    }
  }

  function message(text, cls) {
    $("control-message").textContent = text;
    $("control-message").className = "message " + (cls || "");
  }

  async function control(path, body, done) {
    const headers = body ? { "Content-Type": "application/json" } : {};
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (token) headers.Authorization = "Bearer " + token;
    try {
      const answer = await V.api(path, { method: "POST", headers, body: body ? JSON.stringify(body) : undefined });
      message(done(answer), "ok");
    } catch (e) {
      message(e.status === 401 ? "This miner needs its API token: enter it below." : `Refused: ${e.message}`, "bad");
    }
    await refresh();
  }

  $("pause").addEventListener("click", () => control("/pause", null, () => "Paused."));
  $("resume").addEventListener("click", () => control("/resume", null, () => "Mining again."));
  $("threads-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const threads = Number($("threads-input").value);
    $("threads-input").blur();
    threadsEdited = false;
    control("/threads", { threads }, (a) => `CPU threads: ${a.threads}.`);
  });
  $("threads-input").addEventListener("input", () => {
    threadsEdited = true;
  });
  $("pool-form").addEventListener("submit", (event) => {
    event.preventDefault();
    control("/pool", { url: $("pool-input").value.trim() }, (a) => `Switching to ${a.switching_to}.`);
  });
  // A token typed into a page served over plain http to another machine
  // crosses the network readable by anyone on the way (and with it, the
  // rig's pool can be changed).
  const loopback = ["localhost", "127.0.0.1", "[::1]"].includes(location.hostname);
  if (!window.isSecureContext && !loopback) {
    $("cleartext-warning").classList.remove("hidden");
  }

  $("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, $("token-input").value.trim());
    $("token-input").value = "";
    message("Token kept for this tab.");
  });

  refresh();
  setInterval(() => document.hidden || refresh(), POLL_MS);
  document.addEventListener("visibilitychange", () => document.hidden || refresh());
})();
