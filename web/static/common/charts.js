// Helpers shared by the coordinator's dashboard and the miner's page:
// formatting, escaping, JSON calls and uPlot charts. Exposed as `Vision`.
"use strict";

(function () {
  const COLORS = ["#2457c5", "#c62828", "#1a7f37", "#9a6700", "#7b1fa2", "#00838f", "#5d4037", "#455a64"];

  function esc(value) {
    return String(value ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
  }

  function rate(h) {
    if (h == null || !isFinite(h)) return "-";
    if (h >= 1e9) return (h / 1e9).toFixed(2) + " GH/s";
    if (h >= 1e6) return (h / 1e6).toFixed(2) + " MH/s";
    if (h >= 1e3) return (h / 1e3).toFixed(2) + " kH/s";
    return h.toFixed(1) + " H/s";
  }

  // Base units to LAND (1 LAND = 10^8 base units), exact: amounts past
  // 2^53 base units (90 million LAND) come as BigInt from `parseJson`.
  function coins(units) {
    if (units == null) return "-";
    const big = typeof units === "bigint" ? units : BigInt(Math.round(Number(units)));
    const whole = big / 100000000n;
    const frac = (big % 100000000n).toString().padStart(8, "0").replace(/0+$/, "");
    return whole.toLocaleString("en-US") + (frac ? "." + frac : "") + " LAND";
  }

  function count(n) {
    return n == null ? "-" : (typeof n === "bigint" ? n : Number(n)).toLocaleString("en-US");
  }

  // The API's amounts (base units, u64) and the difficulties the pages
  // show (u64 and u128) that reach past 2^53, where a JSON number loses
  // digits in a browser: read from their source text as BigInt (JSON.parse
  // source access, Chromium 114+, Firefox 135+), and only those, so every
  // figure the pages chart or send back stays a Number.
  const EXACT_KEYS = new Set(["amount", "total", "reward", "immature", "confirmed", "paid", "sending", "set_aside",
    "threshold", "payout_threshold", "estimated_payout", "foundation_fee", "pool_fee", "dust", "spendable",
    "network_difficulty", "share_difficulty", "difficulty", "difficulty_sum", "target"]);

  function parseJson(text) {
    return JSON.parse(text, (key, value, context) =>
      typeof value === "number" && !Number.isSafeInteger(value) && EXACT_KEYS.has(key) &&
        /^[0-9]+$/.test(context?.source ?? "") ? BigInt(context.source) : value);
  }

  function percent(bps) {
    return (bps / 100).toFixed(2).replace(/\.?0+$/, "") + "%";
  }

  // The server's clock minus this browser's, from the answers' Date
  // headers (whole seconds: only a skew past 2 s is taken), so "ago" counts
  // from the server's times by the server's clock.
  let serverSkewMs = 0;

  function ago(ms, now) {
    if (!ms) return "never";
    const s = Math.max(0, Math.round(((now ?? Date.now() + serverSkewMs) - ms) / 1000));
    if (s < 60) return s + " s ago";
    if (s < 3600) return Math.floor(s / 60) + " min ago";
    if (s < 86400) return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min ago";
    return Math.floor(s / 86400) + " d ago";
  }

  // Shows `text` in every element marked data-field="name", with the raw API
  // value in its data-value (what the browser tests compare with the API).
  function setField(name, text, raw) {
    for (const el of document.querySelectorAll(`[data-field="${name}"]`)) {
      el.textContent = text;
      el.dataset.value = raw === undefined ? "" : String(raw);
    }
  }

  function time(ms) {
    return ms ? new Date(ms).toLocaleString() : "-";
  }

  class ApiError extends Error {
    constructor(status, reason, message, retryAfter) {
      super(message || reason);
      this.status = status;
      this.reason = reason;
      // Seconds the server asked to wait (429, 503), or null.
      this.retryAfter = retryAfter ?? null;
    }
  }

  // How long a call may take: a connection that went quiet must not hold a
  // page's refreshes (and its offline banner) for minutes.
  const API_TIMEOUT_MS = 10000;

  // A JSON call. Throws ApiError with the server's reason on a 4xx/5xx, and
  // ApiError(0, "unreachable") when the server cannot be reached in time.
  async function api(path, options) {
    let response;
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(), API_TIMEOUT_MS);
    try {
      response = await fetch(path, Object.assign({ cache: "no-store", signal: abort.signal }, options));
    } catch (e) {
      clearTimeout(timer);
      throw new ApiError(0, "unreachable", "cannot reach the server");
    }
    const served = Date.parse(response.headers.get("Date") ?? "");
    if (Number.isFinite(served)) {
      // (Hysteresis: the header's whole seconds and the trip make a small
      // skew flicker; taken past 2 s, dropped under 1 s.)
      const skew = served - Date.now();
      if (Math.abs(skew) > 2000) serverSkewMs = skew;
      else if (Math.abs(skew) < 1000) serverSkewMs = 0;
    }
    // (The body within the same time: a connection can go quiet after the headers.)
    let body = null;
    try {
      body = parseJson(await response.text());
    } catch (e) {
      body = null;
      if (abort.signal.aborted) throw new ApiError(0, "unreachable", "the server stopped answering");
    } finally {
      clearTimeout(timer);
    }
    if (!response.ok) {
      const retryAfter = Number.parseInt(response.headers.get("Retry-After") ?? "", 10);
      throw new ApiError(response.status, body?.error ?? "http_" + response.status, body?.message ?? response.statusText,
        Number.isFinite(retryAfter) ? retryAfter : null);
    }
    return body;
  }

  // A time-series chart: `series` is [{label, unit}], data is
  // [timesMs, values1, values2, ...]. `fmt` formats the y values.
  class Chart {
    // `points`: join values across gaps (events on a timeline; uPlot marks
    // each value with a dot while they are few).
    constructor(element, series, fmt, points) {
      this.element = element;
      this.fmt = fmt || ((v) => (v == null ? "-" : String(v)));
      const chart = this;
      const opts = {
        width: Math.max(200, element.clientWidth || 600),
        height: 220,
        scales: { x: { time: true } },
        series: [{}].concat(series.map((s, i) => ({
          label: s.label,
          stroke: s.color || COLORS[i % COLORS.length],
          width: 2,
          value: (u, v) => chart.fmt(v),
          ...(points ? { spanGaps: true } : {}),
        }))),
        axes: [{}, { size: 70, values: (u, values) => values.map((v) => chart.fmt(v)) }],
      };
      this.plot = new uPlot(opts, [[]].concat(series.map(() => [])), element);
      if (typeof ResizeObserver !== "undefined") {
        this.observer = new ResizeObserver(() => {
          const width = Math.max(200, element.clientWidth);
          if (Math.abs(width - this.plot.width) > 2) this.plot.setSize({ width, height: 220 });
        });
        this.observer.observe(element);
      }
    }

    // data[0]: times in ms; the rest: one array per series.
    set(data) {
      this.plot.setData([data[0].map((t) => t / 1000)].concat(data.slice(1)));
    }

    destroy() {
      this.observer?.disconnect();
      this.plot.destroy();
    }
  }

  // Sortable table: `columns` are [{key, label, num, value(row) -> sort key,
  // cell(row) -> html}]; clicking a header sorts by it.
  class Table {
    constructor(element, columns, sortKey, descending) {
      this.element = element;
      this.columns = columns;
      this.sortKey = sortKey;
      this.descending = descending ?? true;
      this.rows = [];
      element.addEventListener("click", (event) => {
        const th = event.target.closest("th[data-sort]");
        if (!th) return;
        const key = th.dataset.sort;
        this.descending = this.sortKey === key ? !this.descending : true;
        this.sortKey = key;
        this.render();
      });
    }

    set(rows) {
      this.rows = rows;
      this.render();
    }

    render() {
      const column = this.columns.find((c) => c.key === this.sortKey);
      const rows = this.rows.slice();
      if (column) {
        const key = column.value || ((r) => r[column.key]);
        rows.sort((a, b) => {
          const x = key(a), y = key(b);
          const order = x < y ? -1 : x > y ? 1 : 0;
          return this.descending ? -order : order;
        });
      }
      const head = this.columns.map((c) => {
        const sorted = c.key === this.sortKey ? (this.descending ? " sorted-desc" : " sorted-asc") : "";
        return `<th data-sort="${esc(c.key)}" class="${c.num ? "num" : ""}${sorted}">${esc(c.label)}</th>`;
      }).join("");
      const body = rows.length
        ? rows.map((r) => "<tr>" + this.columns.map((c) => `<td class="${c.num ? "num" : ""}">${c.cell(r)}</td>`).join("") + "</tr>").join("")
        : `<tr><td colspan="${this.columns.length}" class="muted">none</td></tr>`;
      this.element.innerHTML = `<thead><tr>${head}</tr></thead><tbody>${body}</tbody>`;
    }
  }

  window.Vision = { esc, rate, coins, count, percent, ago, time, setField, parseJson, api, ApiError, Chart, Table };
})();
