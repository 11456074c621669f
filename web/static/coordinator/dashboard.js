// The coordinator's dashboard. Every figure comes from the public pool API
// (docs/API.md); admin actions send the token the host typed, kept in this
// tab's sessionStorage only.
"use strict";

(function () {
  const V = window.Vision;
  const POLL_MS = 5000;
  const $ = (id) => document.getElementById(id);
  // Blocks and payouts are heavier reads the pool sheds when busy: read on
  // the overview only, when the chain moved or a block was found, else
  // every SLOW_POLL_MS.
  const SLOW_POLL_MS = 30000;
  const state = {
    stats: null, blocks: [], range: "1h", view: null, charts: {}, lastOk: null, refreshes: 0,
    // Bumped on every route change: a refresh started for another route paints nothing.
    routeGen: 0,
    // The chain's height and blocks found when blocks/payouts were last read.
    slowKey: null, slowAt: 0,
    // No requests before this (a 429 or 503 busy asked the page to wait),
    // but for one the user asked for (`asked`); `quietTimer` ends the wait.
    quietUntil: 0, asked: false, quietTimer: null,
    // The wallets whose part of each payout batch the worker and wallet pages show.
    workerPayoutsOf: null, walletPayoutsOf: null,
    // The detail page, height and blocks found when its slow reads were last made.
    detailKey: null, detailAt: 0,
  };

  // ---- figures ---------------------------------------------------------
  const setField = V.setField;

  function uncertainty(h) {
    if (!h || !h.shares_10m) return "no shares yet";
    return `\u00b1${Math.round(100 / Math.sqrt(h.shares_10m))}% (${V.count(h.shares_10m)} shares)`;
  }

  // A worker id is `wallet.rig`; beside its wallet, the rig's name says it.
  function rigName(workerId, wallet) {
    return wallet && workerId.startsWith(wallet + ".") ? workerId.slice(wallet.length + 1) : workerId;
  }

  function workerLabel(w) {
    return w.worker_name || rigName(w.worker_id, w.wallet_address);
  }

  function workerLink(w) {
    return `<a href="#/worker/${encodeURIComponent(w.worker_id)}">${V.esc(workerLabel(w))}</a>`;
  }

  function renderStats(s) {
    $("pool-name").textContent = s.pool_name;
    document.title = s.pool_name;
    $("stopped").classList.toggle("hidden", s.running);
    setField("height", s.height == null ? "-" : V.count(s.height), s.height);
    setField("network_difficulty", s.network_difficulty == null ? "-" : V.count(s.network_difficulty), s.network_difficulty);
    setField("hashrate.effective_10m", V.rate(s.hashrate.effective_10m) + " " + uncertainty(s.hashrate), s.hashrate.effective_10m);
    setField("hashrate.reported", s.hashrate.reported == null ? "-" : V.rate(s.hashrate.reported), s.hashrate.reported);
    setField("workers", `${V.count(s.workers_online)} / ${V.count(s.workers_active)}`, `${s.workers_online}/${s.workers_active}`);
    setField("blocks_found", V.count(s.blocks_found), s.blocks_found);
    const sh = s.shares;
    setField("shares", `${V.count(sh.accepted)} / ${V.count(sh.stale)} / ${V.count(sh.rejected + sh.duplicate)}`,
      `${sh.accepted}/${sh.stale}/${sh.rejected + sh.duplicate}`);
    setField("foundation_fee_bps", V.percent(s.foundation_fee_bps), s.foundation_fee_bps);
    setField("foundation_fee_text", V.percent(s.foundation_fee_bps), s.foundation_fee_bps);
    setField("pool_fee_bps", V.percent(s.pool_fee_bps), s.pool_fee_bps);
    setField("pool_fee_text", V.percent(s.pool_fee_bps), s.pool_fee_bps);
    setField("foundation_address", s.foundation_address, s.foundation_address);
    setField("pool_fee_address", s.pool_fee_address, s.pool_fee_address);
    setField("payout_scheme", s.payout_scheme.toUpperCase(), s.payout_scheme);
    setField("scheme_text", s.payout_scheme.toUpperCase(), s.payout_scheme);
    setField("payout_threshold", V.coins(s.payout_threshold), s.payout_threshold);
    setField("confirmations", V.count(s.confirmations), s.confirmations);
    tables.workers.set(s.workers);
  }

  // "3 min ago" moves on with every refresh, the blocks read or not.
  function renderLastBlock() {
    const t = state.lastBlockMs;
    setField("last_block", t ? V.ago(t) : "none yet", t || "");
  }

  function renderBlocks(blocks) {
    const newest = blocks.reduce((m, b) => (b.time_ms > (m?.time_ms ?? 0) ? b : m), null);
    state.lastBlockMs = newest ? newest.time_ms : null;
    renderLastBlock();
    tables.blocks.set(blocks);
    state.blocks = blocks;
    chartBlocks();
  }

  const RANGE_MS = { "10m": 600e3, "1h": 3600e3, "24h": 86400e3 };

  // The blocks chart covers the range chosen for the other charts.
  function chartBlocks() {
    const since = Date.now() - RANGE_MS[state.range];
    const shown = state.blocks.filter((b) => b.time_ms >= since).sort((a, b) => a.time_ms - b.time_ms);
    const other = (b) => !["confirmed", "pending"].includes(b.status);
    const height = (wanted) => shown.map((b) => (wanted(b) ? b.height : null));
    state.charts.blocks?.set([shown.map((b) => b.time_ms), height((b) => b.status === "confirmed"),
      height((b) => b.status === "pending"), height(other)]);
    const tab = document.querySelector(`[data-range='${state.range}']`)?.textContent ?? state.range;
    $("blocks-note").textContent = `${V.count(shown.length)} of the ${V.count(state.blocks.length)} blocks listed were found in the last ${tab}.`;
  }

  function status(b) {
    const cls = { confirmed: "ok", pending: "warn", orphaned: "bad", rejected: "bad" }[b.status] || "";
    let text = `<span class="${cls}">${V.esc(b.status)}</span>`;
    if (b.overdue) text += ` <strong class="bad" title="pending longer than 3x its expected confirmation time">overdue</strong>`;
    if (b.operator_flag) text += ` <span class="bad" title="${V.esc(b.operator_flag)}">flagged</span>`;
    return text;
  }

  const tables = {
    workers: new V.Table($("workers-table"), [
      { key: "worker", label: "Worker", value: workerLabel, cell: workerLink },
      { key: "wallet", label: "Wallet", value: (w) => w.wallet_address, cell: (w) => `<a class="mono" href="#/wallet/${encodeURIComponent(w.wallet_address)}">${V.esc(w.wallet_address)}</a>` },
      { key: "effective", label: "Pool's estimate (10 min)", num: true, value: (w) => w.hashrate.effective_10m, cell: (w) => `${V.rate(w.hashrate.effective_10m)} <span class="muted">${uncertainty(w.hashrate)}</span>` },
      { key: "reported", label: "Miner reports", num: true, value: (w) => w.hashrate.reported ?? -1, cell: (w) => (w.hashrate.reported == null ? "-" : V.rate(w.hashrate.reported)) },
      { key: "accepted", label: "Accepted", num: true, value: (w) => w.shares.accepted, cell: (w) => `<span data-worker-accepted="${V.esc(w.worker_id)}">${V.count(w.shares.accepted)}</span>` },
      { key: "stale", label: "Stale", num: true, value: (w) => w.shares.stale, cell: (w) => V.count(w.shares.stale) },
      { key: "invalid", label: "Invalid", num: true, value: (w) => w.shares.rejected + w.shares.duplicate, cell: (w) => V.count(w.shares.rejected + w.shares.duplicate) },
      { key: "last", label: "Last share", value: (w) => w.last_share_ms ?? 0, cell: (w) => V.ago(w.last_share_ms) },
      { key: "online", label: "State", value: (w) => (w.ban ? 0 : w.online ? 2 : 1), cell: (w) => (w.ban ? `<span class="bad">banned: ${V.esc(w.ban.reason)}</span>` : w.online ? `<span class="ok">online</span>` : `<span class="muted">offline</span>`) },
      { key: "payout", label: "Est. payout / block", num: true, value: (w) => w.estimated_payout ?? 0, cell: (w) => V.coins(w.estimated_payout ?? 0) },
    ], "effective"),
    blocks: new V.Table($("blocks-table"), [
      { key: "height", label: "Height", num: true, cell: (b) => `<a href="#/block/${Number(b.height)}">${V.count(b.height)}</a>` },
      { key: "status", label: "Status", cell: (b) => status(b) + (b.reason ? ` <span class="muted">${V.esc(b.reason)}</span>` : "") },
      { key: "confirmations", label: "Confirmations", num: true, cell: (b) => V.count(b.confirmations) },
      { key: "reward", label: "Reward", num: true, cell: (b) => (b.reward ? V.coins(b.reward) : "-") },
      { key: "finder", label: "Finder", cell: (b) => `${V.esc(rigName(b.finder, b.finder_wallet))} <span class="muted mono">${V.esc(b.finder_wallet)}</span>` },
      { key: "time_ms", label: "Found", cell: (b) => V.ago(b.time_ms) },
    ], "height"),
    payouts: new V.Table($("payouts-table"), payoutColumns(), "time_ms"),
    workerPayouts: new V.Table($("worker-payouts"), payoutColumns(() => state.workerPayoutsOf), "time_ms"),
    walletPayouts: new V.Table($("wallet-payouts"), payoutColumns(() => state.walletPayoutsOf), "time_ms"),
    split: new V.Table($("block-split"), [
      { key: "recipient", label: "Recipient", cell: (r) => `<span class="mono">${V.esc(r.recipient)}</span>` },
      { key: "kind", label: "Kind", cell: (r) => V.esc(r.kind.replace("_", " ")) },
      { key: "amount", label: "Amount", num: true, cell: (r) => V.coins(r.amount) },
    ], "amount"),
    wallets: new V.Table($("block-wallets"), [
      { key: "wallet", label: "Wallet", cell: (w) => `<a class="mono" href="#/wallet/${encodeURIComponent(w.wallet)}">${V.esc(w.wallet)}</a>` },
      { key: "shares", label: "Shares", num: true, cell: (w) => V.count(w.shares) },
      { key: "difficulty", label: "Difficulty counted", num: true, cell: (w) => V.count(w.difficulty) },
      { key: "fraction", label: "Part", num: true, cell: (w) => (100 * w.fraction).toFixed(2) + "%" },
      { key: "amount", label: "Amount", num: true, cell: (w) => V.coins(w.amount) },
    ], "amount"),
    history: new V.Table($("block-history"), [
      { key: "at_ms", label: "When", cell: (h) => V.time(h.at_ms) },
      { key: "status", label: "Status", cell: (h) => V.esc(h.status) },
      { key: "reason", label: "Why", cell: (h) => V.esc(h.reason) },
    ], "at_ms", false),
    bans: new V.Table($("admin-bans"), [
      { key: "worker_id", label: "Worker", cell: (b) => V.esc(b.worker_id) },
      { key: "session_id", label: "Session", cell: (b) => `<span class="mono">${V.esc(b.session_id)}</span>` },
      { key: "reason", label: "Reason", cell: (b) => V.esc(b.reason) },
      { key: "banned_until_ms", label: "Until", cell: (b) => V.time(b.banned_until_ms) },
      { key: "unban", label: "", cell: (b) => `<button type="button" class="secondary" data-unban="${V.esc(b.session_id)}">Unban</button>` },
    ], "worker_id", false),
  };

  // A payout batch pays many wallets: on a wallet's (or worker's) page,
  // `wallet()` names the wallet whose part is shown beside the batch's total.
  function payoutColumns(wallet) {
    const part = (p) => p.outputs.filter((o) => o.address === wallet()).reduce((sum, o) => sum + BigInt(o.amount), 0n);
    return [
      { key: "id", label: "Id", num: true, cell: (p) => V.esc(p.id) },
      { key: "status", label: "Status", cell: (p) => `<span class="${p.status === "paid" ? "ok" : p.status === "set_aside" ? "bad" : "warn"}">${V.esc(p.status.replace("_", " "))}</span>` + (p.reason ? ` <span class="muted">${V.esc(p.reason)}</span>` : "") },
    ].concat(wallet ? [
      { key: "part", label: "To this wallet", num: true, value: part, cell: (p) => `<span data-payout-part="${V.esc(p.id)}">${V.coins(part(p))}</span>` },
    ] : []).concat([
      { key: "outputs", label: "Outputs", num: true, value: (p) => p.outputs.length, cell: (p) => V.count(p.outputs.length) },
      { key: "total", label: wallet ? "Batch total" : "Total", num: true, cell: (p) => V.coins(p.total) },
      { key: "time_ms", label: "Made", cell: (p) => V.ago(p.time_ms) },
    ]);
  }

  // ---- charts ------------------------------------------------------------
  function makeCharts() {
    state.charts.hashrate = new V.Chart($("chart-hashrate"), [{ label: "effective" }, { label: "reported" }], V.rate);
    state.charts.shares = new V.Chart($("chart-shares"), [{ label: "accepted", color: "#1a7f37" }, { label: "stale", color: "#9a6700" }, { label: "invalid", color: "#c62828" }], V.count);
    state.charts.blocks = new V.Chart($("chart-blocks"), [{ label: "confirmed", color: "#1a7f37" }, { label: "pending", color: "#9a6700" }, { label: "orphaned/rejected", color: "#c62828" }], V.count, true);
  }

  async function refreshHistory() {
    const h = await V.api(`/pool/history?range=${state.range}`);
    const s = h.samples;
    state.charts.hashrate.set([s.map((x) => x.time_ms), s.map((x) => x.hashrate), s.map((x) => x.reported_hashrate)]);
    state.charts.shares.set([s.map((x) => x.time_ms), s.map((x) => x.accepted), s.map((x) => x.stale), s.map((x) => x.invalid)]);
    // (A long range comes downsampled: a point then covers several samples.)
    const span = s.reduce((widest, x) => Math.max(widest, x.span_ms ?? 0), h.interval_ms);
    const each = span > h.interval_ms ? `, each point covering ${Math.round(span / 1000)} s` : "";
    $("history-note").textContent = `${s.length} points, sampled every ${h.interval_ms / 1000} s${each} since the coordinator started.`;
  }

  // ---- views -------------------------------------------------------------
  // What each view's argument may look like: anything else is not echoed
  // onto the page (a link could make the pool's own page say anything).
  const ARG_FORMAT = {
    worker: /^[A-Za-z0-9_.:-]{1,200}$/,
    block: /^[0-9]{1,20}$/,
    wallet: /^[A-Za-z0-9_.:-]{0,200}$/,
    admin: /^$/,
  };

  function route() {
    let parts;
    try {
      parts = location.hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
    } catch (e) {
      parts = [];
    }
    const view = ["worker", "block", "wallet", "admin"].includes(parts[0]) ? parts[0] : "overview";
    const arg = parts.slice(1).join("/");
    const valid = view === "overview" || (ARG_FORMAT[view].test(arg) && arg !== "." && arg !== "..");
    return { view, arg: valid ? arg : null };
  }

  function show(view) {
    for (const el of document.querySelectorAll("[data-view]")) el.classList.toggle("hidden", el.dataset.view !== view);
    for (const a of document.querySelectorAll("[data-nav]")) a.classList.toggle("current", a.dataset.nav === view);
  }

  function figure(label, value, field) {
    return `<div class="figure"><div class="label">${V.esc(label)}</div><div class="value"${field ? ` data-field="${field}"` : ""}>${value}</div></div>`;
  }

  // A detail page's slow reads (a block, a balance, payouts) again only
  // once the chain moved, a block was found, or a while has passed, as the
  // overview's blocks and payouts; a page newly opened reads at once.
  // Returns the key to note with `detailRead` once read, or null.
  function detailDue(page) {
    const key = `${page}/${state.stats?.height}/${state.stats?.blocks_found}`;
    return key === state.detailKey && Date.now() - state.detailAt < SLOW_POLL_MS ? null : key;
  }

  function detailRead(key) {
    state.detailKey = key;
    state.detailAt = Date.now();
  }

  async function renderWorker(id, stale) {
    if (id === null) return invalidArg("worker", "worker-missing", "That is not a worker id.");
    $("worker-id").textContent = id;
    let w;
    try {
      w = await V.api(`/pool/workers/${encodeURIComponent(id)}`);
      if (stale()) return;
    } catch (e) {
      if (stale()) return;
      if (e.status !== 404) throw e;
      clearViews();
      $("worker-missing").textContent = `${id} has no active session (it may have gone idle).`;
      $("worker-missing").classList.remove("hidden");
      return;
    }
    $("worker-missing").classList.add("hidden");
    const h = w.hashrate;
    $("worker-figures").innerHTML = [
      figure("Pool's estimate (10 min)", `${V.rate(h.effective_10m)} <span class="muted">${uncertainty(h)}</span>`),
      figure("Pool's estimate (1 h)", `${V.rate(h.effective_1h)} <span class="muted">${V.count(h.shares_1h)} shares</span>`),
      figure("Miner reports", h.reported == null ? "-" : V.rate(h.reported)),
      figure("Accepted / stale / invalid", `${V.count(w.shares.accepted)} / ${V.count(w.shares.stale)} / ${V.count(w.shares.rejected + w.shares.duplicate)}`),
      figure("Share difficulty", V.count(w.share_difficulty)),
      figure("Last share", V.ago(w.last_share_ms)),
      figure("State", w.ban ? `<span class="bad">banned: ${V.esc(w.ban.reason)} (until ${V.time(w.ban.until_ms)})</span>` : w.online ? `<span class="ok">online</span>` : "offline"),
      figure("Wallet", `<a class="mono" href="#/wallet/${encodeURIComponent(w.wallet_address)}">${V.esc(w.wallet_address)}</a>`),
      figure("Blocks found", V.count(w.blocks_found)),
      figure("Est. payout per block", V.coins(w.estimated_payout ?? 0)),
    ].join("");
    let why = "";
    if (h.reported != null && h.shares_10m > 0) {
      const diff = (100 * (h.effective_10m - h.reported)) / Math.max(h.reported, 1e-9);
      const band = 100 / Math.sqrt(h.shares_10m);
      why = `The pool's figure is ${diff >= 0 ? "+" : ""}${diff.toFixed(0)}% from the miner's. With ${h.shares_10m} shares in 10 minutes the pool's figure is only known to about \u00b1${band.toFixed(0)}% (one standard deviation), so `
        + (Math.abs(diff) <= 2 * band ? "this difference is luck, not lost work." : "this difference is more than luck: check the stale and invalid counts, and the miner's own log.");
    } else if (h.reported != null) {
      why = "No accepted shares in the last 10 minutes yet: the pool cannot estimate this worker's rate.";
    }
    $("worker-why").textContent = why;
    try {
      const hist = await V.api(`/pool/workers/${encodeURIComponent(id)}/history`);
      if (stale()) return;
      const s = hist.samples;
      state.charts.worker?.set([s.map((x) => x.time_ms), s.map((x) => x.effective_10m), s.map((x) => x.reported_hashrate)]);
    } catch (e) {
      if (e.status !== 404) throw e;
    }
    const due = detailDue(`worker/${id}`);
    if (!due) return;
    const payouts = await V.api(`/pool/payouts?wallet=${encodeURIComponent(w.wallet_address)}&limit=100`);
    if (stale()) return;
    state.workerPayoutsOf = w.wallet_address;
    tables.workerPayouts.set(payouts);
    detailRead(due);
  }

  // A view whose link carries no valid argument: says so, echoing nothing.
  function invalidArg(view, missing, text) {
    clearViews();
    $(`${view}-${view === "block" ? "height" : "id"}`).textContent = "";
    $(missing).textContent = text;
    $(missing).classList.remove("hidden");
  }

  async function renderBlock(height, stale) {
    if (height === null) return invalidArg("block", "block-missing", "That is not a block height.");
    $("block-height").textContent = height;
    let b;
    try {
      b = await V.api(`/pool/blocks/${encodeURIComponent(height)}`);
      if (stale()) return;
    } catch (e) {
      if (stale()) return;
      if (e.status !== 404 && e.status !== 400) throw e;
      clearViews();
      $("block-missing").textContent = e.message;
      $("block-missing").classList.remove("hidden");
      return;
    }
    $("block-missing").classList.add("hidden");
    // Rejected: never credited. Orphaned before its credit: not, unless
    // it comes back on the chain.
    const never = !b.scheme && (b.status === "rejected" || b.status === "orphaned");
    $("block-figures").innerHTML = [
      figure("Status", status(b) + (b.reason ? ` <span class="muted">${V.esc(b.reason)}</span>` : "")),
      figure("Confirmations", V.count(b.confirmations)),
      figure("Reward", b.reward ? V.coins(b.reward) : "-"),
      figure("Scheme", V.esc((b.scheme || (never ? "not credited" : "not credited yet")).toUpperCase())),
      figure("Foundation fee", b.scheme ? V.coins(b.foundation_fee) : "-"),
      figure("Pool fee", b.scheme ? V.coins(b.pool_fee) : "-"),
      figure("Dust (to the foundation)", b.scheme ? V.coins(b.dust) : "-"),
      figure("Found by", `${V.esc(rigName(b.finder, b.finder_wallet))} <span class="muted">${V.esc(b.finder_wallet)}</span>`),
      figure("Found", V.time(b.time_ms)),
      figure("Hash", `<span class="mono">${V.esc(b.hash)}</span>`),
    ].concat(b.round_paid_by == null ? [] : [
      figure("Round paid by", `<a href="#/block/${Number(b.round_paid_by)}">block ${V.count(b.round_paid_by)}</a> <span class="muted">(PROP: this orphan's round was carried there)</span>`),
    ]).join("");
    if (b.overdue) $("block-figures").insertAdjacentHTML("afterbegin", `<p class="bad">Pending longer than expected: check the chain and the coordinator's log.</p>`);
    const w = b.window;
    const carried = w && w.carried_rounds && w.carried_rounds.length
      ? ` It also pays the PROP rounds of orphaned blocks ${w.carried_rounds.map((h) => V.count(h)).join(", ")}.`
      : "";
    $("block-window").textContent = w
      ? `Window: ledger positions ${w.first ?? "-"}-${w.last ?? "-"}, ${w.shares} shares, ${w.difficulty_sum} units of difficulty against N = ${w.target} (coverage ${(100 * w.coverage).toFixed(1)}%).${carried}`
      : never
        ? (b.status === "rejected"
          ? "Never credited: the chain rejected the block."
          : "Not credited: the block left the chain before a reward round credited it (it is, should it come back).")
        : "Not credited yet: the split appears once the chain has accepted the block and a reward round has run.";
    tables.split.set(b.split || []);
    tables.wallets.set(b.wallets || []);
    tables.history.set(b.history || []);
  }

  async function renderWallet(address, stale) {
    $("wallet-error").classList.add("hidden");
    if (address === null) {
      clearViews();
      $("wallet-error").textContent = "That is not a wallet address.";
      $("wallet-error").classList.remove("hidden");
      return;
    }
    if (!address) {
      $("wallet-figures").innerHTML = "";
      tables.walletPayouts.set([]);
      return;
    }
    let b;
    try {
      b = await V.api(`/pool/balances/${encodeURIComponent(address)}`);
      if (stale()) return;
    } catch (e) {
      if (stale()) return;
      if (e.status !== 400) throw e;
      clearViews();
      $("wallet-error").textContent = e.message;
      $("wallet-error").classList.remove("hidden");
      return;
    }
    $("wallet-figures").innerHTML = [
      figure("Immature", V.coins(b.immature), "balance.immature"),
      figure("Confirmed", V.coins(b.confirmed), "balance.confirmed"),
      figure("Paid", V.coins(b.paid), "balance.paid"),
      figure("Sending", V.coins(b.sending), "balance.sending"),
      figure("Set aside", V.coins(b.set_aside), "balance.set_aside"),
      figure("Threshold", V.coins(b.threshold), "balance.threshold"),
    ].join("");
    for (const key of ["immature", "confirmed", "paid", "sending", "set_aside", "threshold"]) {
      document.querySelector(`[data-field="balance.${key}"]`).dataset.value = String(b[key]);
    }
    const payouts = await V.api(`/pool/payouts?wallet=${encodeURIComponent(address)}&limit=100`);
    if (stale()) return;
    state.walletPayoutsOf = address;
    tables.walletPayouts.set(payouts);
  }

  // ---- admin -------------------------------------------------------------
  const TOKEN_KEY = "vision-admin-token";
  // Set while the host has typed in the settings form and not saved yet:
  // refreshes then leave the form alone.
  let settingsEdited = false;
  const token = () => sessionStorage.getItem(TOKEN_KEY);

  function adminMessage(text, cls) {
    const el = $("admin-message");
    el.textContent = text;
    el.className = "message " + (cls || "");
  }

  async function admin(path, method, body) {
    return V.api(path, {
      method: method || "GET",
      headers: Object.assign({ Authorization: "Bearer " + token() }, body ? { "Content-Type": "application/json" } : {}),
      body: body ? JSON.stringify(body) : undefined,
    });
  }

  async function renderAdmin() {
    if (!token()) {
      $("admin-panel").classList.add("hidden");
      return;
    }
    let mode;
    try {
      mode = await admin("/pool/mode");
    } catch (e) {
      if (e.status === 0) throw e;
      $("admin-panel").classList.add("hidden");
      adminMessage(`Refused: ${e.message}`, "bad");
      if (e.status === 401 || e.status === 403) sessionStorage.removeItem(TOKEN_KEY);
      return;
    }
    $("admin-panel").classList.remove("hidden");
    const s = mode.settings;
    const editing = settingsEdited || (document.activeElement && document.activeElement.closest("#admin-settings"));
    if (!editing) {
      $("set-pool-name").value = s.pool_name;
      $("set-pool-fee").value = s.pool_fee_bps;
    }
    $("admin-running").textContent = mode.running ? "running" : "stopped";
    $("admin-running").className = mode.running ? "ok" : "bad";
    tables.bans.set((await admin("/pool/bans")).bans);
  }

  async function adminAction(work, done) {
    try {
      await work();
      adminMessage(done, "ok");
    } catch (e) {
      adminMessage(`Refused: ${e.message}`, "bad");
      if (e.status === 401 || e.status === 403) {
        sessionStorage.removeItem(TOKEN_KEY);
        $("admin-panel").classList.add("hidden");
      }
    }
    await refreshNow();
  }

  function wireAdmin() {
    // A token typed into a page served over plain http to another machine
    // crosses the network readable by anyone on the way.
    const loopback = ["localhost", "127.0.0.1", "[::1]"].includes(location.hostname);
    if (!window.isSecureContext && !loopback) {
      adminMessage("This page is not served over https: the admin token would cross the network in the clear. Use https, or an SSH tunnel to the pool's loopback address.", "bad");
    }
    $("admin-login").addEventListener("submit", async (event) => {
      event.preventDefault();
      const value = $("admin-token").value.trim();
      $("admin-token").value = "";
      if (!value) return;
      sessionStorage.setItem(TOKEN_KEY, value);
      adminMessage("");
      // Checked here, not taken from a refresh (which may not reach the
      // admin view: a busy pool, another route).
      try {
        await admin("/pool/mode");
        adminMessage("Unlocked.", "ok");
      } catch (e) {
        if (e.status === 401 || e.status === 403) sessionStorage.removeItem(TOKEN_KEY);
        adminMessage(`Refused: ${e.message}`, "bad");
      }
      await refreshNow();
    });
    $("admin-forget").addEventListener("click", () => {
      sessionStorage.removeItem(TOKEN_KEY);
      $("admin-panel").classList.add("hidden");
      adminMessage("Token forgotten.");
    });
    $("admin-settings").addEventListener("submit", (event) => {
      event.preventDefault();
      // (An empty field is no fee of 0: `Number("")` is 0.)
      const typed = $("set-pool-fee").value.trim();
      const fee = Number(typed);
      if (typed === "" || !Number.isInteger(fee)) return adminMessage("The pool fee is a whole number of basis points.", "bad");
      document.activeElement?.blur();
      settingsEdited = false;
      adminAction(() => admin("/pool/configure", "POST", { pool_name: $("set-pool-name").value, pool_fee_bps: fee }), "Settings saved.");
    });
    $("admin-settings").addEventListener("input", () => {
      settingsEdited = true;
    });
    $("admin-start").addEventListener("click", () => adminAction(() => admin("/pool/start", "POST"), "Pool started."));
    $("admin-stop").addEventListener("click", () => adminAction(() => admin("/pool/stop", "POST"), "Pool stopped."));
    $("admin-bans").addEventListener("click", (event) => {
      const id = event.target.closest("[data-unban]")?.dataset.unban;
      if (id) adminAction(() => admin(`/pool/bans/${encodeURIComponent(id)}`, "DELETE"), `Unbanned ${id}.`);
    });
  }

  // ---- refresh loop ------------------------------------------------------
  // One refresh at a time; a request during one runs another after it (so
  // an admin change shows at once).
  let running = null;
  let again = false;
  async function refresh() {
    if (running) {
      again = true;
      return running;
    }
    running = (async () => {
      do {
        again = false;
        await refreshOnce();
      } while (again);
    })();
    try {
      await running;
    } finally {
      running = null;
    }
  }

  async function refreshOnce() {
    const { view, arg } = route();
    const gen = state.routeGen;
    const stale = () => gen !== state.routeGen;
    // A back-off holds the timer's refreshes, not what the user asked for
    // (a new view, an admin action); the first one after it is scheduled.
    const asked = state.asked;
    state.asked = false;
    if (!asked && Date.now() < state.quietUntil) {
      if (!state.quietTimer) {
        state.quietTimer = setTimeout(() => {
          state.quietTimer = null;
          document.hidden || refresh();
        }, state.quietUntil - Date.now());
      }
      return;
    }
    // Whether the pool answered this round: a stored read failing after it
    // (503 `storage_unavailable`) is no sign the pool is down.
    let answered = false;
    try {
      const stats = await V.api("/pool/stats");
      if (stale()) return;
      answered = true;
      state.stats = stats;
      renderStats(stats);
      if (view === "overview") {
        // The blocks and payouts again only once the chain moved, a block
        // was found, or a while has passed: many open dashboards must not
        // take the store's public reads from everyone else.
        const key = `${stats.height}/${stats.blocks_found}`;
        if (key !== state.slowKey || Date.now() - state.slowAt >= SLOW_POLL_MS) {
          const [blocks, payouts] = await Promise.all([V.api("/pool/blocks?limit=200"), V.api("/pool/payouts?limit=100")]);
          if (stale()) return;
          renderBlocks(blocks);
          tables.payouts.set(payouts);
          state.slowKey = key;
          state.slowAt = Date.now();
        } else {
          // (The ages the tables show move on between reads.)
          tables.blocks.render();
          tables.payouts.render();
          chartBlocks();
        }
        renderLastBlock();
        await refreshHistory();
      } else if (view === "worker") await renderWorker(arg, stale);
      else if (view === "block" || view === "wallet") {
        const due = detailDue(`${view}/${arg}`);
        if (due) {
          await (view === "block" ? renderBlock(arg, stale) : renderWallet(arg, stale));
          if (!stale()) detailRead(due);
        }
      }
      else if (view === "admin") await renderAdmin();
      state.lastOk = Date.now();
      state.refreshes += 1;
      $("offline").classList.add("hidden");
      $("updated").textContent = "updated " + new Date(state.lastOk).toLocaleTimeString();
      $("updated").dataset.refreshes = String(state.refreshes);
    } catch (e) {
      if (e.status === 429 || (e.status === 503 && e.reason === "busy")) {
        // Busy, not down: wait what it asked (at least 5 s, spread out).
        const wait = Math.max(5, e.retryAfter ?? 0) * (1 + Math.random());
        state.quietUntil = Date.now() + wait * 1000;
        $("updated").textContent = `the pool is busy; trying again in ${Math.round(wait)} s`;
      } else if (answered && e.status !== 0 && e.status !== 408) {
        // The figures above are fresh; the lists are not: say which, and
        // wait what the pool asked before reading them again.
        state.lastOk = Date.now();
        $("offline").classList.add("hidden");
        if (e.retryAfter) state.quietUntil = Date.now() + Math.max(5, e.retryAfter) * 1000;
        $("updated").textContent =
          `updated ${new Date(state.lastOk).toLocaleTimeString()}; some figures unavailable: ${e.message}`;
      } else if (e.status === 0 || e.status === 408 || e.status >= 500) {
        $("offline").classList.remove("hidden");
        $("offline-since").textContent = state.lastOk ? new Date(state.lastOk).toLocaleTimeString() : "never";
      } else {
        console.warn("dashboard:", e.message);
      }
    }
  }

  // Empties the entity views, so a page never shows the previous worker,
  // block or wallet while (or instead of) loading the next.
  function clearViews() {
    for (const id of ["worker-figures", "worker-why", "block-figures", "block-window", "wallet-figures"]) $(id).textContent = "";
    for (const id of ["worker-missing", "block-missing", "wallet-error"]) $(id).classList.add("hidden");
    for (const t of [tables.workerPayouts, tables.walletPayouts, tables.split, tables.wallets, tables.history]) t.set([]);
    state.charts.worker?.set([[], [], []]);
  }

  // A refresh the user asked for (not the timer's): it goes through a back-off.
  function refreshNow() {
    state.asked = true;
    return refresh();
  }

  function onRoute() {
    const { view, arg } = route();
    state.routeGen += 1;
    // The views are emptied: the page opened reads at once.
    state.detailKey = null;
    clearViews();
    if (view === "wallet") $("wallet-input").value = arg ?? "";
    show(view);
    if (view === "worker" && !state.charts.worker) {
      state.charts.worker = new V.Chart($("chart-worker"), [{ label: "pool's estimate" }, { label: "miner reports" }], V.rate);
    }
    refreshNow();
  }

  function start() {
    $("pool-url").textContent = location.origin;
    $("join-command").textContent = `vision-miner --pool ${location.origin} --wallet YOUR_WALLET --worker RIG`;
    $("copy-url").addEventListener("click", async () => {
      try {
        await navigator.clipboard.writeText(location.origin);
        $("copied").textContent = "copied";
      } catch (e) {
        $("copied").textContent = "select and copy the URL";
      }
    });
    $("range-tabs").addEventListener("click", (event) => {
      const range = event.target.closest("[data-range]")?.dataset.range;
      if (!range) return;
      state.range = range;
      for (const b of document.querySelectorAll("[data-range]")) b.classList.toggle("current", b.dataset.range === range);
      chartBlocks();
      refreshNow();
    });
    $("wallet-form").addEventListener("submit", (event) => {
      event.preventDefault();
      location.hash = "#/wallet/" + encodeURIComponent($("wallet-input").value.trim());
    });
    wireAdmin();
    makeCharts();
    window.addEventListener("hashchange", onRoute);
    onRoute();
    // No polling from a tab nobody looks at; catch up when it is shown.
    setInterval(() => document.hidden || refresh(), POLL_MS);
    document.addEventListener("visibilitychange", () => document.hidden || refresh());
  }

  start();
})();
