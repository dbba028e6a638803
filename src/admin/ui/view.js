// The drift view's renderer, shared by the live page (GET / on the admin
// port) and `driftline report --out`: it draws a DriftView (the JSON of
// GET /v1/drift and `driftline report --json`) and nothing else.
"use strict";

const DriftView = (function () {
  const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ({
    "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;",
  }[c]));

  // Four significant digits; p-values and tiny numbers in exponent form.
  function num(x) {
    if (x === null || x === undefined) return "–";
    if (typeof x !== "number") return esc(x);
    if (!isFinite(x)) return String(x);
    if (x === 0) return "0";
    const a = Math.abs(x);
    if (a < 1e-3 || a >= 1e7) return x.toExponential(2);
    if (Number.isInteger(x)) return x.toLocaleString("en-US");
    return Number(x.toPrecision(4)).toString();
  }

  const pct = (x) => (x === null || !isFinite(x) ? "–" : (100 * x).toFixed(x < 0.001 && x > 0 ? 3 : 1) + "%");

  function time(ms) {
    if (ms === null || ms === undefined) return "–";
    const d = new Date(ms);
    return isNaN(d) ? String(ms) : d.toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z");
  }

  // Verdict of one column: drift when a judged statistic is bad, skipped
  // when it was not judged (the reason is shown), ok otherwise.
  function verdict(col) {
    if (col.skipped) return "skipped";
    return col.statistics.some((s) => s.bad) ? "drift" : "ok";
  }

  // How far past its threshold the worst statistic is (value / threshold):
  // the sort key by severity.
  function severity(col) {
    let worst = 0;
    for (const s of col.statistics) {
      if (s.threshold) worst = Math.max(worst, Math.abs(s.value) / Math.abs(s.threshold));
    }
    const bad = col.statistics.filter((s) => s.bad).length;
    return (col.skipped ? -1 : 0) + bad * 1000 + Math.min(worst, 999);
  }

  function missingRate(col) {
    const n = col.count + col.missing;
    return n > 0 ? col.missing / n : null;
  }

  // Reference and current distributions drawn over each other, as shares
  // of each side's present values. Numeric bins sit between the
  // reference's quantile edges, so each is drawn the same width.
  function chart(h) {
    const W = 420, H = 150, top = 8, bottom = 26, left = 34, right = 6;
    if (!h) return `<svg viewBox="0 0 ${W} ${H}"><text x="${left}" y="${H / 2}">no histogram</text></svg>`;
    const ref = h.reference, cur = h.current;
    const rs = ref.reduce((a, b) => a + b, 0) || 1, cs = cur.reduce((a, b) => a + b, 0) || 1;
    const rp = ref.map((c) => c / rs), cp = cur.map((c) => c / cs);
    const max = Math.max(1e-9, ...rp, ...cp);
    const n = rp.length, bw = (W - left - right) / n, ph = H - top - bottom;
    const y = (p) => top + ph - (p / max) * ph;
    let s = `<svg viewBox="0 0 ${W} ${H}" role="img">`;
    for (const t of [0, 0.5, 1]) {
      const yy = y(max * t);
      s += `<line x1="${left}" x2="${W - right}" y1="${yy}" y2="${yy}" stroke="#eef0f3"/>`;
      s += `<text x="${left - 4}" y="${yy + 3}" text-anchor="end">${pct(max * t)}</text>`;
    }
    for (let i = 0; i < n; i++) {
      const x = left + i * bw;
      s += `<rect x="${x + 1}" y="${y(rp[i])}" width="${Math.max(bw - 2, 1)}" height="${top + ph - y(rp[i])}" fill="var(--ref)" fill-opacity="0.35" stroke="var(--ref)" stroke-width="1"><title>reference ${pct(rp[i])}</title></rect>`;
      const inset = Math.min(bw * 0.22, 6);
      s += `<rect x="${x + inset}" y="${y(cp[i])}" width="${Math.max(bw - 2 * inset, 1)}" height="${top + ph - y(cp[i])}" fill="var(--cur)" fill-opacity="0.8"><title>current ${pct(cp[i])}</title></rect>`;
    }
    s += `<line x1="${left}" x2="${W - right}" y1="${top + ph}" y2="${top + ph}" stroke="#adb5bd"/>`;
    if (h.type === "categories") {
      const names = h.categories.concat(["other"]);
      const every = Math.ceil(n / 9);
      names.forEach((name, i) => {
        if (i % every) return;
        const label = name.length > 9 ? name.slice(0, 8) + "…" : name;
        s += `<text x="${left + (i + 0.5) * bw}" y="${H - 12}" text-anchor="middle">${esc(label)}</text>`;
      });
    } else {
      // Edge i sits between bins i and i+1.
      const every = Math.ceil(h.edges.length / 5);
      h.edges.forEach((e, i) => {
        if (i % every) return;
        s += `<text x="${left + (i + 1) * bw}" y="${H - 12}" text-anchor="middle">${num(e)}</text>`;
      });
      s += `<text x="${W - right}" y="${H - 1}" text-anchor="end">bins between reference quantiles</text>`;
    }
    return s + "</svg>";
  }

  function statsTable(col) {
    if (!col.statistics.length) return `<div class="why">${esc(col.skipped || "no statistic judged")}</div>`;
    let s = `<table class="stats"><tr><th>statistic</th><th>value</th><th>threshold</th><th>p-value</th><th></th></tr>`;
    for (const j of col.statistics) {
      s += `<tr class="${j.bad ? "bad" : ""}" data-statistic="${esc(j.statistic)}"><td>${esc(j.statistic)}</td>` +
        `<td class="num">${num(j.value)}</td><td class="num">${j.threshold === null ? "reported" : num(j.threshold)}</td>` +
        `<td class="num">${j.p_value === undefined ? "" : num(j.p_value)}</td><td>${j.bad ? "bad" : ""}</td></tr>`;
    }
    return s + "</table>";
  }

  function columnRow(col) {
    const v = verdict(col);
    const label = { drift: "DRIFT", ok: "OK", skipped: "NOT JUDGED" }[v];
    const mr = missingRate(col);
    return `<div class="column" data-column="${esc(col.name)}" data-verdict="${v}" data-severity="${severity(col)}">
      <div><div class="name">${esc(col.name)}</div>
        <div class="meta">${esc(col.kind)} · ${esc(col.source)}${col.exact === false ? " · sketched" : ""}</div>
        <div style="margin-top:6px"><span class="verdict ${v}">${label}</span></div>
        ${col.skipped ? `<div class="why">${esc(col.skipped)}</div>` : ""}
        <div class="missing">missing <b>${pct(mr)}</b> (${num(col.missing)} of ${num(col.count + col.missing)})</div>
        <div class="meta">effective n ${col.effective_n === null ? "–" : num(Math.round(col.effective_n))}</div></div>
      <div>${chart(col.histogram)}</div>
      <div>${statsTable(col)}</div></div>`;
  }

  function historyStrip(history) {
    if (!history || !history.length) return `<span class="muted">no window evaluated yet</span>`;
    const cells = history.map((h) => {
      const cls = !h.judged ? "skipped" : h.bad.length ? "bad" : "";
      const why = h.bad.map((b) => `${b.column} ${b.statistic}`).join(", ");
      return `<span class="${cls}" title="${esc(`${time(h.window.start)} – ${time(h.window.end)}, ${h.window.count} events: ${!h.judged ? "not judged" : why || "no drift"}`)}"></span>`;
    });
    return `<div class="history" id="history" data-windows="${history.length}">${cells.join("")}</div>`;
  }

  function alertsTable(alerts) {
    if (!alerts.length) return `<span class="muted">no alert has fired</span>`;
    let s = `<table id="alerts"><tr><th>state</th><th>kind</th><th>feature</th><th>statistic</th><th>value</th><th>threshold</th><th>since</th><th>streak bad/good</th></tr>`;
    for (const a of alerts) {
      s += `<tr class="${a.state === "firing" ? "bad" : ""}" data-alert="${esc(a.kind)}:${esc(a.feature)}" data-state="${esc(a.state)}">` +
        `<td>${esc(a.state)}</td><td>${esc(a.kind)}</td><td>${esc(a.feature)}</td><td>${esc(a.statistic)}</td>` +
        `<td class="num">${num(a.value)}</td><td class="num">${num(a.threshold)}</td><td>${time(a.since)}</td>` +
        `<td class="num">${a.bad_streak}/${a.good_streak}</td></tr>`;
    }
    return s + "</table>";
  }

  // The whole view's verdict: drift when the latest judged window has a bad
  // statistic or an alert is firing (live), or when any window was bad
  // (report).
  function overall(view) {
    const st = view.status;
    const cols = st.columns.concat(st.score ? [st.score] : []);
    if (view.report) {
      if (view.report.drifted) {
        // One line per column: its bad statistics, with how many windows.
        const by = new Map();
        for (const r of view.report.rules) {
          if (!by.has(r.column)) by.set(r.column, []);
          by.get(r.column).push(view.report.judged_windows > 1 ? `${r.statistic} (${r.windows} of ${view.report.judged_windows} windows)` : r.statistic);
        }
        return ["drift", Array.from(by, ([c, s]) => `${c}: ${s.join(", ")}`)];
      }
      return [view.report.judged_windows ? "ok" : "skipped", []];
    }
    // One line per drifting column: its bad statistics against their thresholds.
    const rules = [];
    for (const c of cols) {
      const bad = c.statistics.filter((j) => j.bad).map((j) => `${j.statistic} ${num(j.value)} ≥ ${num(j.threshold)}`);
      if (bad.length) rules.push(`${c.name}: ${bad.join(", ")}`);
    }
    const firing = st.alerts.filter((a) => a.state === "firing");
    if (firing.length) rules.push(`${firing.length} alert${firing.length > 1 ? "s" : ""} firing: ${firing.map((a) => `${a.kind} ${a.feature}`).join(", ")}`);
    if (rules.length) return ["drift", rules];
    if (!st.window || cols.every((c) => c.skipped)) return ["skipped", []];
    return ["ok", []];
  }

  let sortBy = "severity";

  function sortColumns(root) {
    const list = root.querySelector("#columns");
    if (!list) return;
    const rows = Array.from(list.querySelectorAll(".column"));
    rows.sort((a, b) => sortBy === "name"
      ? a.dataset.column.localeCompare(b.dataset.column)
      : Number(b.dataset.severity) - Number(a.dataset.severity));
    rows.forEach((r) => list.appendChild(r));
    root.querySelectorAll(".controls button").forEach((b) => b.classList.toggle("on", b.dataset.sort === sortBy));
  }

  function render(root, view) {
    const st = view.status;
    const [v, rules] = overall(view);
    const label = { drift: "DRIFT", ok: "NO DRIFT", skipped: "NOT JUDGED" }[v];
    const cols = st.columns.concat(st.score ? [st.score] : []);
    const w = st.window;
    let s = `<section id="summary" data-verdict="${v}"><h2>Summary</h2><div class="summary">
      <span class="verdict ${v} big" id="verdict">${label}</span>
      <dl class="kv"><dt>model</dt><dd>${esc(st.model)} / ${esc(st.model_version)}</dd>
        <dt>reference</dt><dd>${esc(view.reference)}</dd>
        <dt>window</dt><dd id="window" data-count="${w ? w.count : 0}" data-evaluations="${st.evaluations}">${w ? `${num(w.count)} events, ${time(w.start)} – ${time(w.end)}` : "none closed yet"}</dd>
        <dt>evaluations</dt><dd>${num(st.evaluations)}${st.windows_dropped ? `, ${num(st.windows_dropped)} windows dropped` : ""}</dd>
        <dt>columns</dt><dd>${cols.filter((c) => verdict(c) === "drift").length} drifting of ${cols.length} (${cols.filter((c) => c.skipped).length} not judged)</dd>
        ${st.budget ? `<dt>false-alarm budget</dt><dd>${num(st.budget.false_alarm_rate)} over ${st.budget.tests} tests (${num(st.budget.per_test)} each)</dd>` : ""}
      </dl></div>`;
    if (rules.length) s += `<div style="margin-top:8px"><b>Why:</b><ul class="rules">${rules.map((r) => `<li>${esc(r)}</li>`).join("")}</ul></div>`;
    s += `</section>`;
    if (view.report) {
      const r = view.report;
      s += `<section id="report"><h2>Data</h2><dl class="kv">
        <dt>file</dt><dd>${esc(r.data)}</dd><dt>model</dt><dd>${esc(r.model)}</dd>
        <dt>rows</dt><dd>${num(r.rows)} read, ${num(r.scored)} scored${r.skipped.length ? `, ${r.skipped.map((k) => `${num(k.rows)} ${esc(k.reason)} (${esc(k.example)})`).join("; ")}` : ""}</dd>
        <dt>windows</dt><dd>${r.window_events ? `${num(r.window_events)} events each` : "the whole file as one"}: ${num(r.windows)} evaluated, ${num(r.judged_windows)} judged (min_samples ${num(view.config.min_samples)})</dd></dl></section>`;
    }
    s += `<section><h2>Windows</h2><div class="legend"><span><i class="swatch" style="background:var(--ok)"></i>no drift</span><span><i class="swatch" style="background:var(--bad)"></i>drift</span><span><i class="swatch" style="background:#ced4da"></i>not judged</span><span>oldest → newest; hover for details</span></div>${historyStrip(st.history)}</section>`;
    if (!view.report || st.alerts.length) s += `<section><h2>Alerts (fire after ${view.config.fire_after} bad, resolve after ${view.config.resolve_after} good)</h2>${alertsTable(st.alerts)}</section>`;
    s += `<section><h2>Columns</h2><div class="controls">sort by <button data-sort="severity">severity</button><button data-sort="name">name</button>
      <span class="legend"><span><i class="swatch" style="background:var(--ref);opacity:.5"></i>reference</span><span><i class="swatch" style="background:var(--cur)"></i>current window</span></span></div>
      <div id="columns">${cols.map(columnRow).join("")}</div></section>`;
    root.innerHTML = s;
    root.querySelectorAll(".controls button").forEach((b) => b.addEventListener("click", () => { sortBy = b.dataset.sort; sortColumns(root); }));
    sortColumns(root);
  }

  return { render, num, pct, esc, time };
})();
