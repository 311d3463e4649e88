/* EssentiaServer dashboard: plain JS, no framework, no build step.
 *
 * Every action goes through the public JSON API with the same X-API-Key a script would send. Text that comes
 * from users or the server is only ever set with textContent (never parsed as markup). The admin key lives in
 * sessionStorage (gone when the tab closes) and never in the URL.
 */
"use strict";

(function () {
  const SVG_NS = "http://www.w3.org/2000/svg";
  const KEY_STORAGE = "essentia.apiKey";
  const REFRESH_MS = 5000;
  const PITCHES = ["C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B"];
  const production = document.body.dataset.production === "1";

  const $ = (id) => document.getElementById(id);

  // -- small DOM helpers (textContent only) -------------------------------------------------------------------

  function el(tag, text, className) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (className) node.className = className;
    return node;
  }

  function svg(tag, attrs, text) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, String(value));
    if (text !== undefined) node.textContent = String(text);
    return node;
  }

  function clear(node) {
    while (node.firstChild) node.removeChild(node.firstChild);
  }

  function clearSvg(node) {
    // Keep the <title> (the chart's accessible name), drop the drawing.
    for (const child of Array.from(node.childNodes)) {
      if (child.nodeName.toLowerCase() !== "title") node.removeChild(child);
    }
  }

  function fmt(value, digits) {
    if (value === null || value === undefined || Number.isNaN(value)) return "—";
    return Number(value).toFixed(digits === undefined ? 1 : digits);
  }

  function pct(value) {
    if (value === null || value === undefined) return "—";
    return Math.round(Number(value) * 100) + "%";
  }

  function formatUptime(seconds) {
    const s = Math.max(0, Math.floor(seconds));
    const d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600), m = Math.floor((s % 3600) / 60);
    if (d) return `${d} d ${h} h`;
    if (h) return `${h} h ${m} min`;
    if (m) return `${m} min ${s % 60} s`;
    return `${s} s`;
  }

  function formatDate(iso) {
    if (!iso) return "—";
    const date = new Date(iso);
    return Number.isNaN(date.getTime()) ? iso : date.toLocaleString();
  }

  // -- the API ------------------------------------------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, code, message, retryAfter) {
      super(message);
      this.status = status;
      this.code = code;
      this.retryAfter = retryAfter;
    }
  }

  function storedKey() {
    try { return sessionStorage.getItem(KEY_STORAGE) || ""; } catch (e) { return ""; }
  }

  async function api(path, options) {
    const opts = Object.assign({ method: "GET" }, options || {});
    const headers = new Headers(opts.headers || {});
    headers.set("Accept", "application/json");
    const key = storedKey();
    if (key) headers.set("X-API-Key", key);
    if (opts.json !== undefined) {
      headers.set("Content-Type", "application/json");
      opts.body = JSON.stringify(opts.json);
    }
    let response;
    try {
      response = await fetch(path, {
        method: opts.method, headers, body: opts.body, credentials: "same-origin", cache: "no-store",
      });
    } catch (error) {
      throw new ApiError(0, "network_error", "The server could not be reached. Is it running?");
    }
    let body = null;
    try { body = await response.json(); } catch (e) { body = null; }
    if (!response.ok) {
      const code = (body && body.error) || `http_${response.status}`;
      const message = (body && body.message) || response.statusText || "The request failed.";
      throw new ApiError(response.status, code, message, response.headers.get("Retry-After"));
    }
    return body;
  }

  function describeError(error) {
    if (!(error instanceof ApiError)) return String(error && error.message ? error.message : error);
    let text = error.message;
    if (error.status === 401) text += " Enter an API key at the top of the page.";
    else if (error.status === 403 && error.code === "admin_required") text += " Use a key made with --admin.";
    else if (error.status === 403 && /api_key/.test(error.code)) text += " Check the key at the top of the page.";
    if (error.retryAfter) text += ` Try again in ${error.retryAfter} s.`;
    return error.status ? `${text} (${error.status} ${error.code})` : text;
  }

  // -- notices ------------------------------------------------------------------------------------------------

  function showError(error, context) {
    const text = (context ? context + ": " : "") + describeError(error);
    $("notice-text").textContent = text;
    $("notice").hidden = false;
    if (error instanceof ApiError && (error.status === 401 || (error.status === 403 && /api_key/.test(error.code)))) {
      $("key-form").hidden = false;
      $("key-form").classList.add("attention");
    }
  }

  function hideNotice() {
    $("notice").hidden = true;
  }

  // -- API key (production mode) ------------------------------------------------------------------------------

  function renderKeyState() {
    const key = storedKey();
    $("key-state").textContent = key ? `using ${key.slice(0, 12)}…` : (production ? "no key set" : "");
    $("key-form").classList.toggle("attention", production && !key);
  }

  function setupKeyForm() {
    $("key-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const value = $("api-key").value.trim();
      try {
        if (value) sessionStorage.setItem(KEY_STORAGE, value);
      } catch (e) { /* storage disabled: nothing to keep */ }
      $("api-key").value = "";
      renderKeyState();
      hideNotice();
      refreshAll();
    });
    $("key-forget").addEventListener("click", () => {
      try { sessionStorage.removeItem(KEY_STORAGE); } catch (e) { /* ignore */ }
      renderKeyState();
    });
    renderKeyState();
  }

  // -- overview -----------------------------------------------------------------------------------------------

  let overviewTimer = null;

  async function refreshOverview() {
    try {
      const health = await api("/health");
      $("stat-status").textContent = health.status;
      $("status-dot").className = "status-dot " + (health.status === "healthy" ? "ok" : "bad");
      $("stat-uptime").textContent = formatUptime(health.uptime);
      $("stat-version").textContent = health.version;
    } catch (error) {
      $("stat-status").textContent = "unreachable";
      $("status-dot").className = "status-dot bad";
    }
    try {
      const stats = await api("/stats");
      $("stat-analyses").textContent = stats.total_analyses;
      $("stat-hits").textContent = stats.cache_hits;
      $("stat-misses").textContent = stats.cache_misses;
      $("stat-hit-rate").textContent = stats.cache_hit_rate;
      $("stat-songs").textContent = stats.total_cached_songs;
      $("stat-queue").textContent = stats.queue_depth === undefined ? "—" : stats.queue_depth;
      cacheState.totalSongs = stats.total_cached_songs;
      renderPager();
      $("overview-updated").textContent = "updated " + new Date().toLocaleTimeString();
    } catch (error) {
      for (const id of ["stat-analyses", "stat-hits", "stat-misses", "stat-hit-rate", "stat-songs", "stat-queue"]) {
        $(id).textContent = "—";
      }
      $("overview-updated").textContent = error instanceof ApiError && error.status
        ? `statistics unavailable (${error.status} ${error.code})` : "statistics unavailable";
    }
  }

  function scheduleOverview() {
    clearInterval(overviewTimer);
    overviewTimer = setInterval(() => {
      if (!document.hidden) refreshOverview();
    }, REFRESH_MS);
  }

  // -- analyze ------------------------------------------------------------------------------------------------

  let busy = false;

  function setBusy(flag, text) {
    busy = flag;
    $("analyze-progress").textContent = text || "";
    $("analyze-progress").classList.toggle("working", flag);
    $("dropzone").classList.toggle("busy", flag);
    $("file-input").disabled = flag;
    for (const button of $("url-form").querySelectorAll("button")) button.disabled = flag;
  }

  function titleFromFile(name) {
    return name.replace(/\.[A-Za-z0-9]{1,5}$/, "").replace(/[_]+/g, " ").trim();
  }

  // Both ways of analyzing end the same: show the result, refresh the overview and the cache table.
  async function runAnalysis(path, options, busyText, failureText) {
    setBusy(true, busyText);
    const started = performance.now();
    try {
      const result = await api(path, options);
      hideNotice();
      showResult(result, (performance.now() - started) / 1000);
      setBusy(false, "");
      refreshOverview();
      loadCache();
    } catch (error) {
      setBusy(false, "");
      showError(error, failureText);
    }
  }

  async function analyzeFile(file) {
    if (!file || busy) return;
    const form = new FormData();
    // Multipart form fields carry any Unicode title; a header value could not (browsers refuse non-Latin-1).
    form.append("file", file, file.name);
    form.append("title", $("song-title").value.trim() || titleFromFile(file.name));
    const artist = $("song-artist").value.trim();
    if (artist) form.append("artist", artist);
    try {
      await runAnalysis("/analyze_data?detail=1", { method: "POST", body: form }, `Analyzing ${file.name}…`,
        `Could not analyze ${file.name}`);
    } finally {
      $("file-input").value = "";
    }
  }

  async function analyzeUrl(url) {
    if (!url || busy) return;
    const body = { url };
    const title = $("song-title").value.trim();
    const artist = $("song-artist").value.trim();
    if (title) body.title = title;
    if (artist) body.artist = artist;
    await runAnalysis("/analyze?detail=1", { method: "POST", json: body }, "Downloading and analyzing…",
      "Could not analyze the URL");
  }

  function setupAnalyze() {
    const zone = $("dropzone");
    $("file-input").addEventListener("change", () => analyzeFile($("file-input").files[0]));
    for (const type of ["dragenter", "dragover"]) {
      zone.addEventListener(type, (event) => {
        event.preventDefault();
        if (!busy) zone.classList.add("over");
      });
    }
    for (const type of ["dragleave", "dragend"]) zone.addEventListener(type, () => zone.classList.remove("over"));
    zone.addEventListener("drop", (event) => {
      event.preventDefault();
      zone.classList.remove("over");
      const file = event.dataTransfer && event.dataTransfer.files[0];
      if (file) analyzeFile(file);
    });
    // A file dropped anywhere else must not make the browser navigate away from the page.
    window.addEventListener("dragover", (event) => event.preventDefault());
    window.addEventListener("drop", (event) => event.preventDefault());
    $("url-form").addEventListener("submit", (event) => {
      event.preventDefault();
      analyzeUrl($("song-url").value.trim());
    });
  }

  function addFact(list, label, value, wide) {
    const wrap = el("div", null, wide ? "fact wide" : "fact");
    wrap.appendChild(el("dt", label));
    wrap.appendChild(el("dd", value));
    list.appendChild(wrap);
  }

  function addBar(container, label, value) {
    const row = el("div", null, "bar-row");
    const id = "bar-" + label.toLowerCase().replace(/\W+/g, "-");
    const name = el("span", label, "bar-label");
    name.id = id;
    const track = el("div", null, "bar-track");
    track.setAttribute("role", "meter");
    track.setAttribute("aria-labelledby", id);
    track.setAttribute("aria-valuemin", "0");
    track.setAttribute("aria-valuemax", "100");
    const v = Math.max(0, Math.min(1, Number(value) || 0));
    track.setAttribute("aria-valuenow", String(Math.round(v * 100)));
    const fill = el("div", null, "bar-fill");
    fill.style.width = (v * 100).toFixed(1) + "%"; // CSSOM, allowed by the page's style-src 'self'
    track.appendChild(fill);
    row.appendChild(name);
    row.appendChild(track);
    row.appendChild(el("span", pct(v), "bar-value"));
    container.appendChild(row);
  }

  function showResult(r, seconds) {
    $("result").hidden = false;
    $("result-title").textContent = r.title;
    $("result-artist").textContent = r.artist;
    const meta = [r.cached ? "from the cache" : "analyzed now", `id ${r.id}`];
    if (seconds !== undefined) meta.push(`answered in ${seconds.toFixed(1)} s`);
    $("result-meta").textContent = meta.join(" · ");

    const bpm = r.user_verified && r.manual_bpm !== null ? r.manual_bpm : r.bpm;
    $("result-bpm").textContent = bpm ? fmt(bpm, 1) : "—";
    $("result-bpm-conf").textContent = `confidence ${pct(r.bpm_confidence)}`;
    const chips = $("result-candidates");
    clear(chips);
    (r.bpm_candidates || []).forEach((c, i) => {
      const chip = el("li", `${fmt(c.bpm, 1)} · ${pct(c.score)}`, i === 0 ? "chip chip-best" : "chip");
      chip.title = i === 0 ? "chosen tempo" : "alternative (half/double)";
      chips.appendChild(chip);
    });

    $("result-key").textContent = r.key;
    $("result-camelot").textContent = r.camelot || "";
    $("result-camelot").hidden = !r.camelot;
    $("result-key-conf").textContent = `confidence ${pct(r.key_confidence)}`;

    const bars = $("result-bars");
    clear(bars);
    addBar(bars, "Energy", r.energy);
    addBar(bars, "Danceability", r.danceability);
    addBar(bars, "Acousticness", r.acousticness);

    const facts = $("result-facts");
    clear(facts);
    addFact(facts, "Loudness", r.loudness_lufs === null ? "—" : `${fmt(r.loudness_lufs, 1)} LUFS`);
    addFact(facts, "Brightness", `${fmt(r.spectral_centroid, 0)} Hz`);
    addFact(facts, "Time signature", r.time_signature ? `${r.time_signature}/4` : "—");
    addFact(facts, "Analyzed", `${fmt(r.duration, 1)} s`);
    if (r.source && r.source.format) {
      const src = r.source;
      addFact(facts, "Source", `${src.format} · ${src.sample_rate || "?"} Hz · ${src.channels || "?"} ch`);
    }
    if (r.user_verified) addFact(facts, "Corrected", `${r.manual_bpm ?? "—"} BPM · ${r.manual_key ?? "—"}`);

    drawCharts(r);
  }

  // -- charts (SVG, drawn here) -------------------------------------------------------------------------------

  let lastResult = null;

  function drawCharts(r) {
    lastResult = r;
    const d = r.detail;
    $("charts").hidden = !d;
    if (!d) return;
    drawOnset(d);
    drawChroma(d, r);
    drawKeys(d, r);
  }

  // Each chart is drawn in its own pixel size (the viewBox follows the element), so text is never stretched.
  function sizeChart(chart) {
    const W = Math.max(200, Math.round(chart.getBoundingClientRect().width) || 400);
    const H = 200;
    chart.setAttribute("viewBox", `0 0 ${W} ${H}`);
    return [W, H];
  }

  function drawOnset(d) {
    const chart = $("onset-chart");
    clearSvg(chart);
    const [W, H] = sizeChart(chart);
    const top = 10, bottom = 175;
    const env = d.onset_envelope || [];
    const rate = d.onset_frame_rate || 0;
    const seconds = env.length && rate ? env.length / rate : 0;
    if (!env.length || !seconds) {
      chart.appendChild(svg("text", { x: W / 2, y: H / 2, "text-anchor": "middle", class: "chart-note" },
        "No onset data (silent or very short audio)."));
      return;
    }
    const x = (t) => (t / seconds) * W;
    const y = (v) => bottom - Math.max(0, Math.min(1, v)) * (bottom - top);
    // time ticks, every 1/2/5 s
    const step = seconds / (W / 60) > 2 ? 5 : seconds / (W / 60) > 1 ? 2 : 1;
    for (let t = 0; t <= seconds; t += step) {
      chart.appendChild(svg("line", { x1: x(t), x2: x(t), y1: bottom, y2: bottom + 4, class: "axis" }));
      chart.appendChild(svg("text", { x: x(t) + 2, y: H - 6, class: "tick" }, `${t}s`));
    }
    chart.appendChild(svg("line", { x1: 0, x2: W, y1: bottom, y2: bottom, class: "axis" }));
    const beats = svg("g", { class: "beats" });
    for (const t of d.beat_times || []) {
      if (t < 0 || t > seconds) continue;
      beats.appendChild(svg("line", { x1: x(t), x2: x(t), y1: top, y2: bottom, class: "beat" }));
    }
    chart.appendChild(beats);
    let line = "";
    env.forEach((v, i) => {
      line += (i ? "L" : "M") + x(i / rate).toFixed(1) + " " + y(v).toFixed(1);
    });
    const area = `${line}L${x((env.length - 1) / rate).toFixed(1)} ${bottom}L0 ${bottom}Z`;
    chart.appendChild(svg("path", { d: area, class: "onset-area" }));
    chart.appendChild(svg("path", { d: line, class: "onset-line" }));
    $("onset-chart-title").textContent =
      `Onset envelope over ${seconds.toFixed(1)} s with ${(d.beat_times || []).length} detected beats`;
  }

  function tonicIndex(r) {
    if (typeof r.key_index === "number") return r.key_index;
    const name = (r.key || "").split(" ")[0];
    return PITCHES.indexOf(name);
  }

  function drawChroma(d, r) {
    const chart = $("chroma-chart");
    clearSvg(chart);
    const [W] = sizeChart(chart);
    const bottom = 170, top = 10, band = W / 12;
    const chroma = d.chroma || [];
    const peak = Math.max(1e-9, ...chroma.map(Number));
    const tonic = tonicIndex(r);
    chroma.forEach((v, i) => {
      const h = (Math.max(0, v) / peak) * (bottom - top);
      const rect = svg("rect", {
        x: i * band + 4, y: bottom - h, width: band - 8, height: Math.max(h, 0.5),
        class: i === tonic ? "bar tonic" : "bar",
      });
      rect.appendChild(svg("title", {}, `${PITCHES[i]}: ${fmt(v, 2)}`));
      chart.appendChild(rect);
      const label = { x: i * band + band / 2, y: 188, "text-anchor": "middle", class: "tick" };
      chart.appendChild(svg("text", label, PITCHES[i]));
    });
    chart.appendChild(svg("line", { x1: 0, x2: W, y1: bottom, y2: bottom, class: "axis" }));
    const ordered = chroma.map((v, i) => [v, PITCHES[i]]).sort((a, b) => b[0] - a[0]).slice(0, 3);
    $("chroma-chart-title").textContent = "Chroma; strongest pitch classes " + ordered.map((p) => p[1]).join(", ");
  }

  function drawKeys(d, r) {
    const chart = $("keys-chart");
    clearSvg(chart);
    const [W] = sizeChart(chart);
    const top = 10, bottom = 170, mid = (top + bottom) / 2, band = W / 12;
    const corr = d.key_correlations || {};
    const scale = (mid - top);
    const keyName = r.key || "";
    chart.appendChild(svg("line", { x1: 0, x2: W, y1: mid, y2: mid, class: "axis" }));
    PITCHES.forEach((p, i) => {
      [["Major", 0], ["Minor", 1]].forEach(([mode, j]) => {
        const name = `${p} ${mode}`;
        const v = Math.max(-1, Math.min(1, Number(corr[name]) || 0));
        const h = Math.abs(v) * scale;
        const cls = ["bar", mode === "Major" ? "major" : "minor"];
        if (name === keyName) cls.push("chosen");
        const rect = svg("rect", {
          x: i * band + 3 + j * (band - 6) / 2, y: v >= 0 ? mid - h : mid,
          width: (band - 6) / 2 - 1, height: Math.max(h, 0.5), class: cls.join(" "),
        });
        rect.appendChild(svg("title", {}, `${name}: r = ${fmt(v, 2)}`));
        chart.appendChild(rect);
      });
      chart.appendChild(svg("text", { x: i * band + band / 2, y: 188, "text-anchor": "middle", class: "tick" }, p));
    });
    $("keys-chart-title").textContent = `Correlation of the chroma with the 24 key profiles; best: ${keyName}`;
  }

  // -- cache browser ------------------------------------------------------------------------------------------

  const cacheState = { offset: 0, hasNext: false, rows: [], query: "", totalSongs: null, loading: 0 };

  function pageLimit() {
    return Number($("cache-limit").value) || 25;
  }

  const SORTERS = {
    newest: (a, b) => b.id - a.id,
    oldest: (a, b) => a.id - b.id,
    title: (a, b) => a.title.localeCompare(b.title, undefined, { sensitivity: "base" }) || b.id - a.id,
    artist: (a, b) => a.artist.localeCompare(b.artist, undefined, { sensitivity: "base" }) || b.id - a.id,
    bpm: (a, b) => shownBpm(a) - shownBpm(b) || b.id - a.id,
    key: (a, b) => shownKey(a).localeCompare(shownKey(b)) || b.id - a.id,
  };

  function shownBpm(row) {
    return row.manual_bpm !== null && row.manual_bpm !== undefined ? row.manual_bpm : row.bpm;
  }

  function shownKey(row) {
    return row.manual_key || row.key;
  }

  async function loadCache() {
    const limit = pageLimit();
    const sort = $("cache-sort").value;
    const query = $("cache-search").value.trim();
    cacheState.query = query;
    // Ask for one more row than shown: if it comes, there is a next page.
    const params = new URLSearchParams({ limit: String(limit + 1), offset: String(cacheState.offset) });
    let path;
    if (query) {
      params.set("q", query);
      path = "/cache/search?" + params;
    } else {
      params.set("sort", sort);
      path = "/cache?" + params;
    }
    const ticket = ++cacheState.loading;
    try {
      const rows = await api(path);
      if (ticket !== cacheState.loading) return; // a newer request has been made meanwhile
      cacheState.hasNext = rows.length > limit;
      cacheState.rows = rows.slice(0, limit);
      // Search results come newest first from the server; the chosen order is applied within the page.
      if (query && SORTERS[sort]) cacheState.rows.sort(SORTERS[sort]);
      renderCache();
    } catch (error) {
      if (ticket !== cacheState.loading) return;
      cacheState.rows = [];
      cacheState.hasNext = false;
      renderCache();
      $("cache-empty").textContent = "The cache could not be loaded (see the message above).";
      showError(error, "Could not load the cache");
    }
  }

  function renderCache() {
    const body = $("cache-body");
    clear(body);
    for (const row of cacheState.rows) {
      const tr = el("tr");
      tr.dataset.id = String(row.id);
      const titleCell = el("td", null, "title-cell");
      const open = el("button", row.title, "row-open");
      open.type = "button";
      open.setAttribute("aria-label", `Details of ${row.title}`);
      open.addEventListener("click", () => openSong(row.id));
      titleCell.appendChild(open);
      tr.appendChild(titleCell);
      tr.appendChild(el("td", row.artist));
      const bpmCell = el("td", null, "num bpm-cell");
      bpmCell.appendChild(el("span", shownBpm(row) ? fmt(shownBpm(row), 1) : "—", "bpm-value"));
      if (row.user_verified) {
        const badge = el("span", "✓", "verified");
        badge.title = `corrected (detected ${fmt(row.bpm, 1)} BPM, ${row.key})`;
        badge.setAttribute("aria-label", "corrected");
        bpmCell.appendChild(badge);
      }
      tr.appendChild(bpmCell);
      tr.appendChild(el("td", shownKey(row), "key-cell"));
      tr.appendChild(el("td", pct(row.energy), "num hide-narrow"));
      tr.appendChild(el("td", formatDate(row.analyzed_at), "hide-narrow small"));
      tr.addEventListener("click", (event) => {
        if (event.target === open) return;
        openSong(row.id);
      });
      body.appendChild(tr);
    }
    $("cache-empty").hidden = cacheState.rows.length > 0;
    $("cache-empty").textContent =
      cacheState.query ? `No songs match “${cacheState.query}”.` : "No songs cached yet.";
    renderPager();
  }

  function renderPager() {
    const first = cacheState.rows.length ? cacheState.offset + 1 : 0;
    const last = cacheState.offset + cacheState.rows.length;
    let info = `${first}–${last}`;
    if (!cacheState.query && cacheState.totalSongs !== null) info += ` of ${cacheState.totalSongs}`;
    if (cacheState.query) info += " matches";
    $("page-info").textContent = cacheState.rows.length ? info : "";
    $("page-prev").disabled = cacheState.offset === 0;
    $("page-next").disabled = !cacheState.hasNext;
  }

  function setupCache() {
    let timer = null;
    $("cache-search").addEventListener("input", () => {
      clearTimeout(timer);
      timer = setTimeout(() => { cacheState.offset = 0; loadCache(); }, 250);
    });
    $("cache-form").addEventListener("submit", (event) => {
      event.preventDefault();
      clearTimeout(timer);
      cacheState.offset = 0;
      loadCache();
    });
    for (const id of ["cache-sort", "cache-limit"]) {
      $(id).addEventListener("change", () => { cacheState.offset = 0; loadCache(); });
    }
    $("cache-refresh").addEventListener("click", () => { loadCache(); refreshOverview(); });
    $("page-prev").addEventListener("click", () => {
      cacheState.offset = Math.max(0, cacheState.offset - pageLimit());
      loadCache();
    });
    $("page-next").addEventListener("click", () => {
      cacheState.offset += pageLimit();
      loadCache();
    });
    $("export-json").addEventListener("click", exportJson);
    $("export-csv").addEventListener("click", exportCsv);
  }

  // -- export -------------------------------------------------------------------------------------------------

  function download(name, type, text) {
    const url = URL.createObjectURL(new Blob([text], { type }));
    const link = el("a");
    link.href = url;
    link.download = name;
    document.body.appendChild(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  }

  function stamp() {
    return new Date().toISOString().slice(0, 19).replace(/[:T]/g, "-");
  }

  async function exportJson() {
    try {
      const data = await api("/cache/export");
      download(`essentia-cache-${stamp()}.json`, "application/json", JSON.stringify(data, null, 2));
    } catch (error) {
      showError(error, "Export failed");
    }
  }

  const CSV_COLUMNS = ["title", "artist", "bpm", "key", "energy", "danceability", "acousticness", "analyzed_at"];

  function csvCell(value) {
    if (value === null || value === undefined) return "";
    let text = String(value);
    // A title starting with = + - @ would be run as a formula by spreadsheets: make it plain text.
    if (typeof value === "string" && /^[=+\-@\t\r]/.test(text)) text = "'" + text;
    return /[",\r\n']/.test(text) ? '"' + text.replace(/"/g, '""') + '"' : text;
  }

  async function exportCsv() {
    try {
      const data = await api("/cache/export");
      const lines = [CSV_COLUMNS.join(",")];
      for (const song of data.songs || []) lines.push(CSV_COLUMNS.map((c) => csvCell(song[c])).join(","));
      // A byte-order mark so that spreadsheet programs read the UTF-8 titles correctly.
      download(`essentia-cache-${stamp()}.csv`, "text/csv;charset=utf-8", "\ufeff" + lines.join("\r\n") + "\r\n");
    } catch (error) {
      showError(error, "Export failed");
    }
  }

  // -- one song: details, correction, deletion ----------------------------------------------------------------

  let currentSong = null;
  let deleteArmed = null;

  function findRow(id) {
    return cacheState.rows.find((row) => row.id === id) || null;
  }

  function openSong(id) {
    const row = findRow(id);
    if (!row) return;
    currentSong = row;
    fillDialog(row);
    $("dialog-status").textContent = "";
    disarmDelete();
    const dialog = $("song-dialog");
    if (!dialog.open) dialog.showModal();
    $("verify-bpm").focus();
  }

  function fillDialog(row) {
    $("dialog-title").textContent = row.title;
    $("dialog-artist").textContent = row.artist;
    const facts = $("dialog-facts");
    clear(facts);
    addFact(facts, "Id", row.id);
    addFact(facts, "Detected BPM", `${row.bpm ? fmt(row.bpm, 1) : "—"} (confidence ${pct(row.bpm_confidence)})`);
    addFact(facts, "Detected key", `${row.key} (confidence ${pct(row.key_confidence)})`);
    addFact(facts, "Energy", pct(row.energy));
    addFact(facts, "Danceability", pct(row.danceability));
    addFact(facts, "Acousticness", pct(row.acousticness));
    addFact(facts, "Brightness", `${fmt(row.spectral_centroid, 0)} Hz`);
    addFact(facts, "Analyzed", formatDate(row.analyzed_at));
    addFact(facts, "Corrected", row.user_verified
      ? `${row.manual_bpm ?? "—"} BPM · ${row.manual_key ?? "—"}${row.bpm_notes ? " · " + row.bpm_notes : ""}`
      : "no", true);
    addFact(facts, "Source", row.preview_url, true);
    $("verify-bpm").value = row.manual_bpm ?? "";
    $("verify-key").value = row.manual_key ?? "";
    $("verify-notes").value = row.bpm_notes ?? "";
  }

  function disarmDelete() {
    clearTimeout(deleteArmed);
    deleteArmed = null;
    $("delete-song").textContent = "Delete";
    $("delete-song").classList.remove("armed");
  }

  async function saveCorrection(event) {
    event.preventDefault();
    if (!currentSong) return;
    const body = { id: currentSong.id };
    const bpmText = $("verify-bpm").value.trim();
    const keyText = $("verify-key").value.trim();
    const notes = $("verify-notes").value.trim();
    if (bpmText) {
      const bpm = Number(bpmText);
      if (!Number.isFinite(bpm) || bpm < 20 || bpm > 400) {
        $("dialog-status").textContent = "BPM must be a number from 20 to 400.";
        return;
      }
      body.manual_bpm = bpm;
    }
    if (keyText) body.manual_key = keyText;
    if (notes) body.bpm_notes = notes;
    if (!bpmText && !keyText && !notes) {
      $("dialog-status").textContent = "Enter a BPM, a key or a note first.";
      return;
    }
    $("dialog-status").textContent = "Saving…";
    try {
      const answer = await api("/verify", { method: "POST", json: body });
      const song = answer.song;
      const index = cacheState.rows.findIndex((row) => row.id === song.id);
      if (index >= 0) cacheState.rows[index] = song;
      currentSong = song;
      fillDialog(song);
      renderCache();
      $("dialog-status").textContent = answer.message;
    } catch (error) {
      $("dialog-status").textContent = describeError(error);
    }
  }

  async function deleteSong() {
    if (!currentSong) return;
    if (!deleteArmed) {
      // Two steps instead of a blocking confirm(): the first click arms the button for a few seconds.
      $("delete-song").textContent = "Click again to delete";
      $("delete-song").classList.add("armed");
      deleteArmed = setTimeout(disarmDelete, 5000);
      return;
    }
    disarmDelete();
    const id = currentSong.id;
    $("dialog-status").textContent = "Deleting…";
    try {
      const answer = await api(`/cache/${id}`, { method: "DELETE" });
      $("song-dialog").close();
      currentSong = null;
      $("notice").hidden = true;
      $("cache-empty").textContent = answer.message;
      await loadCache();
      refreshOverview();
    } catch (error) {
      $("dialog-status").textContent = describeError(error);
    }
  }

  function setupDialog() {
    const list = $("key-names");
    for (const mode of ["Major", "Minor"]) {
      for (const p of PITCHES) {
        const option = el("option");
        option.value = `${p} ${mode}`;
        list.appendChild(option);
      }
    }
    $("verify-form").addEventListener("submit", saveCorrection);
    $("delete-song").addEventListener("click", deleteSong);
    $("dialog-close").addEventListener("click", () => $("song-dialog").close());
    $("song-dialog").addEventListener("close", disarmDelete);
    // A click on the backdrop (outside the dialog box) closes it.
    $("song-dialog").addEventListener("click", (event) => {
      if (event.target === $("song-dialog")) $("song-dialog").close();
    });
  }

  // -- start --------------------------------------------------------------------------------------------------

  function refreshAll() {
    refreshOverview();
    loadCache();
  }

  function start() {
    $("notice-close").addEventListener("click", hideNotice);
    setupKeyForm();
    setupAnalyze();
    setupCache();
    setupDialog();
    document.addEventListener("visibilitychange", () => { if (!document.hidden) refreshOverview(); });
    let resizeTimer = null;
    window.addEventListener("resize", () => {
      clearTimeout(resizeTimer);
      resizeTimer = setTimeout(() => { if (lastResult) drawCharts(lastResult); }, 150);
    });
    refreshAll();
    scheduleOverview();
    if (production && !storedKey()) $("api-key").focus();
    document.body.classList.add("ready");
  }

  start();
})();
