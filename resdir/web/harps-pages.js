// What sliders.html and retrieve.html share: the site's URLs, TAP (ADQL,
// JSON), the model's API services (DaCHS `api` renderer, JSON), the latent
// dimensions with what each correlates with, target look-up, and a uPlot
// spectrum plot with zoom and pan.  Everything is fetched from this site.
"use strict";

const HARPS = (() => {
  const schema = location.pathname.split("/")[1];          // harps (or a scratch copy)
  const base = `${location.origin}/${schema}/q`;
  const tapSync = `${location.origin}/tap/sync`;
  const $ = id => document.getElementById(id);

  function esc(s) {
    return String(s ?? "").replace(/[&<>"']/g, c =>
      ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c]));
  }
  function sqlString(s) { return "'" + String(s).replace(/'/g, "''") + "'"; }
  function num(v, digits = 3) { return v == null || v === "" || isNaN(+v) ? "" : (+v).toPrecision(digits); }
  /** An ssa_dateobs (MJD number, or already a date string) as an ISO date and time. */
  function date(v) {
    if (v == null || v === "") return "";
    if (typeof v === "number" || /^[\d.]+$/.test(v)) {
      return new Date((+v - 40587) * 86400000).toISOString().slice(0, 16).replace("T", " ");
    }
    return String(v).slice(0, 16).replace("T", " ");
  }

  /** The text of a DaCHS error document (VOTable QUERY_STATUS, or an HTML page). */
  function serverMessage(text, status) {
    const xml = new DOMParser().parseFromString(text, "application/xml");
    for (const info of xml.getElementsByTagName("INFO")) {
      if (info.getAttribute("name") === "QUERY_STATUS" && info.getAttribute("value") === "ERROR"
          && info.textContent.trim()) return info.textContent.trim();
    }
    const html = new DOMParser().parseFromString(text, "text/html");     // DaCHS's error pages
    const main = html.querySelector(".errmsg") || html.querySelector("h1") || html.body;
    const plain = (main ? main.textContent : text).replace(/\s+/g, " ").trim();
    return (plain ? `${plain} (HTTP ${status})` : `the server answered HTTP ${status}`).slice(0, 600);
  }

  /** Columns of a DaCHS JSON table by (lower-case) name, and its params as plain values.
   *  (TAP keeps the case of ssa_dateObs and ssa_pubDID; ADQL names are case-blind.) */
  function table(doc) {
    const names = doc.columns.map(c => c.name.toLowerCase());
    const params = Object.fromEntries(Object.entries(doc.params || {})
      .map(([k, v]) => [k, v && typeof v === "object" && "value" in v ? v.value : v]));
    return {
      params, names, data: doc.data,
      col(name) { const i = names.indexOf(name); return i < 0 ? null : doc.data.map(r => r[i]); },
      rows() { return doc.data.map(r => Object.fromEntries(r.map((v, i) => [names[i], v]))); },
    };
  }

  async function parsed(resp) {
    const text = await resp.text();
    let doc = null;
    if (resp.ok) { try { doc = JSON.parse(text); } catch (e) { doc = null; } }
    if (!doc || !Array.isArray(doc.columns)) throw new Error(serverMessage(text, resp.status));
    return doc;
  }

  /** GET service/api with params (or POST the FormData `form`); a table(). */
  async function api(service, params, {signal, form} = {}) {
    const url = `${base}/${service}/api`;
    let resp;
    if (form) {
      form.set("RESPONSEFORMAT", "json");
      resp = await fetch(url, {method: "POST", body: form, signal});
    } else {
      resp = await fetch(`${url}?${new URLSearchParams({...params, RESPONSEFORMAT: "json"})}`, {signal});
    }
    return table(await parsed(resp));
  }

  /** Rows (objects) of a sync ADQL query. */
  async function tap(query, {signal} = {}) {
    const body = new URLSearchParams({REQUEST: "doQuery", LANG: "ADQL", QUERY: query,
                                      RESPONSEFORMAT: "application/json"});
    return table(await parsed(await fetch(tapSync, {method: "POST", body, signal}))).rows();
  }
  function tapLink(query, format = "html") {
    return `${tapSync}?` + new URLSearchParams({REQUEST: "doQuery", LANG: "ADQL",
                                                 RESPONSEFORMAT: format, QUERY: query});
  }

  function median(sorted) {
    const n = sorted.length;
    return n % 2 ? sorted[(n - 1) / 2] : (sorted[n / 2 - 1] + sorted[n / 2]) / 2;
  }

  /** The informative coordinates z1, z2, ... of the current model: for each its
   *  latent dimension, the labels it shares most information with, its archive
   *  range (min, max) and median (of up to 20000 spectra). */
  async function loadDims() {
    const [cols, mi] = await Promise.all([
      tap(`SELECT column_name, description FROM tap_schema.columns
           WHERE table_name = '${schema}.latents' AND column_name LIKE 'z%'`),
      tap(`SELECT i.model_id, i.dim, i.label, i.mi_ksg FROM ${schema}.latent_mi AS i
           JOIN ${schema}.models AS m ON m.model_id = i.model_id
           WHERE m.is_current = 1 AND i.basis = 'latent'`)]);
    const dims = cols.filter(c => /^z\d+$/.test(c.column_name))
      .sort((a, b) => +a.column_name.slice(1) - +b.column_name.slice(1))
      .map(c => {
        const m = /Latent dimension (\d+)/.exec(c.description || "");
        const dim = m ? +m[1] : null;
        const labels = mi.filter(r => r.dim === dim && r.mi_ksg > 0)
          .sort((a, b) => b.mi_ksg - a.mi_ksg);
        return {z: c.column_name, dim, labels, description: c.description,
                label: labels.length ? `${c.column_name} (${labels[0].label})` : c.column_name};
      });
    if (!dims.length) return {dims, modelId: null};
    const zs = dims.map(d => d.z);
    const [[range], sample] = await Promise.all([
      tap(`SELECT ${zs.map(z => `MIN(${z}) AS ${z}_lo, MAX(${z}) AS ${z}_hi`).join(", ")}
           FROM ${schema}.latents WHERE encode_flags = 0`),
      tap(`SELECT TOP 20000 ${zs.join(", ")} FROM ${schema}.latents WHERE encode_flags = 0`)]);
    for (const d of dims) {
      d.lo = range[`${d.z}_lo`]; d.hi = range[`${d.z}_hi`];
      d.median = median(sample.map(r => r[d.z]).filter(v => v != null).sort((a, b) => a - b));
    }
    return {dims, modelId: mi.length ? mi[0].model_id : null};
  }

  /** Encoded public spectra whose target name contains `name` (ADQL ILIKE). */
  function findTarget(name) {
    return tap(`SELECT TOP 100 d.ssa_pubdid, d.ssa_targname, d.ssa_dateobs, d.ssa_snr
      FROM ${schema}.data AS d JOIN ${schema}.latents AS l ON l.ssa_pubdid = d.ssa_pubdid
      WHERE l.encode_flags = 0 AND d.ssa_targname ILIKE ${sqlString(`%${name}%`)}
      ORDER BY d.ssa_snr DESC`);
  }

  /** Fill `el` with one button per spectrum of findTarget(); `pick(did)` on click. */
  async function targetChoices(name, el, pick) {
    el.textContent = "searching...";
    try {
      const rows = await findTarget(name);
      el.innerHTML = rows.length ? rows.map(r =>
        `<button type="button" data-did="${esc(r.ssa_pubdid)}">${esc(r.ssa_targname)},
         ${esc(date(r.ssa_dateobs))}, S/N ${num(r.ssa_snr, 3)}</button>`).join("")
        : `<span class="err">No encoded public spectrum of a target matching "${esc(name)}".</span>`;
      for (const b of el.querySelectorAll("button")) b.onclick = () => pick(b.dataset.did);
    } catch (e) { el.innerHTML = `<span class="err">${esc(e.message)}</span>`; }
  }

  /** uPlot plugin: the wheel zooms the x axis around the cursor, shift-drag or
   *  middle-drag pans, both within the data; double-click (uPlot's own) resets. */
  function navPlugin() {
    function clamp(u, min, max) {
      const x = u.data[0], lo = x[0], hi = x[x.length - 1], w = Math.min(max - min, hi - lo);
      if (min < lo) { min = lo; max = lo + w; }
      if (max > hi) { max = hi; min = hi - w; }
      return {min, max};
    }
    return {hooks: {ready: u => {
      u.over.addEventListener("wheel", e => {
        if (!u.data[0] || !u.data[0].length) return;
        e.preventDefault();
        const left = u.over.getBoundingClientRect().left;
        const at = u.posToVal(e.clientX - left, "x"), {min, max} = u.scales.x;
        const f = e.deltaY < 0 ? 0.75 : 1 / 0.75;
        u.setScale("x", clamp(u, at - (at - min) * f, at + (max - at) * f));
      }, {passive: false});
      u.root.addEventListener("mousedown", e => {
        if (!(e.shiftKey || e.button === 1) || !u.over.contains(e.target)) return;
        e.preventDefault(); e.stopPropagation();
        const x0 = e.clientX, {min, max} = u.scales.x, perPx = (max - min) / u.over.clientWidth;
        const move = ev => {
          const dx = (ev.clientX - x0) * perPx;
          u.setScale("x", clamp(u, min - dx, max - dx));
        };
        const up = () => { removeEventListener("mousemove", move); removeEventListener("mouseup", up); };
        addEventListener("mousemove", move); addEventListener("mouseup", up);
      }, true);
    }}};
  }

  /** A uPlot of spectra in `el` (x: wavelength in Angstrom), as wide as `el`. */
  function spectrumPlot(el, series, {height = 420} = {}) {
    const opts = {
      width: Math.max(el.clientWidth, 300), height,
      scales: {x: {time: false}},
      series: [{label: "wavelength (Å)", value: (u, v) => v == null ? "" : v.toFixed(2)},
               ...series.map(s => ({points: {show: false}, value: (u, v) => v == null ? "" : v.toFixed(4), ...s}))],
      axes: [{label: "wavelength (Å)"}, {label: "normalised flux"}],
      cursor: {drag: {x: true, y: false}},
      plugins: [navPlugin()],
      hooks: {destroy: [() => resize.disconnect()]},
    };
    const u = new uPlot(opts, [[], ...series.map(() => [])], el);
    const resize = new ResizeObserver(() => {
      const width = Math.max(el.clientWidth, 300);
      if (width !== u.width) u.setSize({width, height});
    });
    resize.observe(el);
    return u;
  }

  /** Replace the plot's data; a zoomed x range stays as it was (y follows the data). */
  function setDataKeepZoom(u, data) {
    const x = u.data[0], {min, max} = u.scales.x;
    const zoomed = x && x.length && min != null && (min > x[0] || max < x[x.length - 1]);
    u.batch(() => {
      u.setData(data);
      if (zoomed) u.setScale("x", {min, max});
    });
  }

  /** Copy `text` to the clipboard (a selected textarea where the Clipboard API is missing). */
  async function copy(text) {
    if (navigator.clipboard && window.isSecureContext) {
      try { await navigator.clipboard.writeText(text); return true; } catch (e) { /* below */ }
    }
    const ta = document.createElement("textarea");
    ta.value = text; document.body.appendChild(ta); ta.select();
    const ok = document.execCommand("copy");
    ta.remove();
    return ok;
  }

  function showError(el, message) {
    el.textContent = message;
    el.hidden = !message;
  }

  return {schema, base, tapSync, $, esc, num, date, sqlString, api, tap, tapLink, loadDims,
          targetChoices, spectrumPlot, setDataKeepZoom, copy, showError, serverMessage};
})();
