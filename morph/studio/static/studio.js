// morph studio's page: plain JavaScript, no build step. The server holds the scene; this draws its state,
// sends edits (a YAML path and the new value's text) and shows frames as they arrive (latest request wins).
"use strict";

const token = new URLSearchParams(location.search).get("token") || "";
const $ = (id) => document.getElementById(id);
const enc = encodeURIComponent;
// a POST carries the token in a header (the server refuses it in the cookie or the query: see server.py)
const api = (path, body) => fetch(path + (path.includes("?") ? "&" : "?") + "token=" + enc(token),
  body === undefined ? {} : {method: "POST", headers: {"Content-Type": "application/json", "X-Morph-Token": token},
                             body: JSON.stringify(body)});

let S = null;                 // the server's last state
let renderName = null;        // the render on the timeline
let controlSignature = "";
let editing = 0;              // edits in flight (the poll waits)
const studio = window.studio = {latencies: [], shown: null};  // read by the browser tests

// --- frames ------------------------------------------------------------------------------------------------

// Scrubbing keeps one request in flight (the latest position wins); playback keeps PLAY_DEPTH, so that
// transfer and decoding overlap the next draw, and shows a frame only if it is newer than the one shown.
const PLAY_DEPTH = 3;
let wanted = null, inflight = 0, fullTimer = null, sent = 0, shownSeq = 0;

function requestFrame(quality, t0 = performance.now()) {
  if (!S || !renderName) return;
  wanted = {render: renderName, i: +$("scrub").value, quality, v: S.version, t0};
  pump();
}

async function pump() {
  if (inflight >= (playing ? PLAY_DEPTH : 1) || !wanted) return;
  const w = wanted; wanted = null; inflight++;
  w.seq = ++sent;
  try {
    const r = await api(`/api/frame?render=${enc(w.render)}&i=${w.i}&quality=${w.quality}&v=${w.v}`);
    if (r.ok && w.seq > shownSeq) {
      const url = URL.createObjectURL(await r.blob());
      const img = $("frame"), old = img.src;
      await new Promise((done) => { img.onload = done; img.onerror = done; img.src = url; });
      if (old.startsWith("blob:")) URL.revokeObjectURL(old);
      shownSeq = Math.max(shownSeq, w.seq);
      const ms = performance.now() - w.t0;
      studio.shown = {render: w.render, index: w.i, quality: w.quality, version: w.v, ms};
      Object.assign(img.dataset, {render: w.render, index: w.i, quality: w.quality, version: w.v});
      if (w.quality === "preview" && !playing) studio.latencies.push(ms);
      if (playing) studio.played = (studio.played || 0) + 1;
      $("latency").textContent = `frame ${w.i} (${w.quality}) shown in ${ms.toFixed(0)} ms`;
    }
  } finally {
    inflight--;
    pump();
  }
}

function scrubbed() {
  requestFrame("preview");
  readout();
  clearTimeout(fullTimer);
  fullTimer = setTimeout(() => requestFrame("full"), 200);   // full size once the scrubbing stops
}

function readout() {
  const r = currentRender();
  if (!r) return;
  const i = +$("scrub").value;
  $("readout").textContent = `frame ${i} / ${r.frames} · ${(i / r.fps).toFixed(2)} s of ${(r.frames / r.fps).toFixed(2)} s · ${r.fps} fps · ${r.frame} ${r.format}`;
}

// --- playback at the render's fps, dropping frames where the machine cannot keep up ---------------------------

let playing = false;
function play() {
  playing = !playing;
  $("play").textContent = playing ? "❚❚ Pause" : "▶ Play";
  if (!playing) { requestFrame("full"); return; }
  const r = currentRender(), start = performance.now(), first = +$("scrub").value, played = studio.played || 0;
  let last = -1;
  const tick = (now) => {
    if (!playing) return;
    const i = Math.floor(first + (now - start) * r.fps / 1000) % r.frames;
    if (inflight < PLAY_DEPTH && i !== last) {
      last = i; $("scrub").value = i; readout(); requestFrame("preview");
    }
    $("fps").textContent = ` · playing at ${(((studio.played || 0) - played) * 1000 / (now - start)).toFixed(1)} of ${r.fps} fps`;
    requestAnimationFrame(tick);
  };
  requestAnimationFrame(tick);
}

// --- the scene's state -------------------------------------------------------------------------------------

function currentRender() { return S && S.renders.find((r) => r.name === renderName); }

function applyState(s) {
  const first = !S;
  S = s;
  $("file").textContent = s.name;
  $("dirty").hidden = !s.dirty;
  $("notice").textContent = s.busy || s.notice || "";
  $("errors").hidden = !s.errors.length;
  $("errors").textContent = s.errors.join("\n");
  const names = s.renders.map((r) => r.name);
  if ([...$("render").options].map((o) => o.value).join() !== names.join()) {
    $("render").innerHTML = names.map((n) => `<option>${escapeHtml(n)}</option>`).join("");
  }
  if (!names.includes(renderName)) renderName = names[0] || null;
  $("render").value = renderName;
  timeline();
  controls(s.controls);
  explore(first);
  renderJob(s.render);
}

function timeline() {
  const r = currentRender();
  if (!r) return;
  const scrub = $("scrub");
  scrub.max = r.frames - 1;
  if (+scrub.value > r.frames - 1) scrub.value = r.frames - 1;
  $("marks").innerHTML = r.keyframes.map((f, k) =>
    `<span class="mark" data-frame="${f}" style="left:${(100 * f / Math.max(1, r.frames - 1)).toFixed(2)}%" title="${escapeHtml(r.keys[k])} at frame ${f}">${escapeHtml(r.keys[k])}</span>`).join("");
  readout();
}

function escapeHtml(t) { return String(t).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`); }

// --- controls: sliders and pickers that edit the scene -------------------------------------------------------

function format(c, v) {
  const n = c.unit === "f" ? Math.round(v) : Number((+v).toFixed(3));
  return c.unit ? `${n}${c.unit}` : String(n);
}

let editWanted = null;
async function sendEdit(body, then) {
  editWanted = {body, then};
  if (editing) return;
  editing++;
  try {
    while (editWanted) {
      const e = editWanted; editWanted = null;
      const s = await (await api("/api/edit", e.body)).json();
      applyState(s);
      requestFrame(e.then || "preview");
    }
  } finally { editing--; }
}

function controls(list) {
  const signature = JSON.stringify(list.map((c) => [c.path, c.kind, c.options]));
  const box = $("controls");
  if (signature !== controlSignature) {
    controlSignature = signature;
    box.innerHTML = "";
    const groups = {};
    for (const c of list) {
      if (!groups[c.group]) {
        const fs = document.createElement("fieldset");
        fs.innerHTML = `<legend>${escapeHtml(c.group)}</legend>`;
        box.appendChild(fs);
        groups[c.group] = fs;
      }
      groups[c.group].appendChild(makeControl(c));
    }
  }
  for (const c of list) {
    const el = box.querySelector(`[data-path='${CSS.escape(JSON.stringify(c.path))}']`);
    if (el && el.update) el.update(c);
  }
}

function makeControl(c) {
  const div = document.createElement("div");
  div.dataset.path = JSON.stringify(c.path);
  if (c.kind === "number") {
    div.className = "control";
    div.innerHTML = `<span>${escapeHtml(c.label)}</span><input type="range"><input class="num" type="text">`;
    const [range, num] = div.querySelectorAll("input");
    Object.assign(range, {min: c.min, max: c.max, step: c.step});
    range.addEventListener("input", () => { num.value = format(c, range.value); sendEdit({path: c.path, value: num.value}); });
    range.addEventListener("change", () => sendEdit({path: c.path, value: format(c, range.value)}, "full"));
    num.addEventListener("change", () => sendEdit({path: c.path, value: num.value}, "full"));
    div.update = (n) => {
      c = n;
      range.min = Math.min(n.min, n.value); range.max = Math.max(n.max, n.value);
      if (document.activeElement !== range) range.value = n.value;
      if (document.activeElement !== num && !S.errors.length) num.value = format(n, n.value);
    };
  } else if (c.kind === "choice") {
    div.className = "control";
    div.innerHTML = `<span>${escapeHtml(c.label)}</span><select>${c.options.map((o) => `<option>${escapeHtml(o)}</option>`).join("")}</select><span></span>`;
    const sel = div.querySelector("select");
    sel.addEventListener("change", () => sendEdit({path: c.path, value: sel.value}, "full"));
    div.update = (n) => { if (document.activeElement !== sel) sel.value = n.value; };
  } else if (c.kind === "mix") {
    div.innerHTML = `<div class="small">${escapeHtml(c.label)}: a group sets all its layers</div><div class="mix"></div>`;
    const grid = div.querySelector(".mix");
    let owners = c.value.slice();
    const options = (cur) => [...new Set([cur, ...c.options])].map((o) => `<option>${escapeHtml(o)}</option>`).join("");
    const send = () => sendEdit({path: c.path, owners}, "full");
    const draw = () => {
      grid.innerHTML = "";
      for (const [g, [a, b]] of Object.entries(S.groups)) {
        if (a === b) continue;
        const same = owners.slice(a, b).every((o) => o === owners[a]);
        const lab = document.createElement("label");
        lab.className = "group";
        lab.innerHTML = `${g} ${a}-${b - 1}<select data-group="${g}"><option value="">(mixed)</option>${options(owners[a])}</select>`;
        const sel = lab.querySelector("select");
        sel.value = same ? owners[a] : "";
        sel.addEventListener("change", () => { if (sel.value) { owners.fill(sel.value, a, b); draw(); send(); } });
        grid.appendChild(lab);
      }
      owners.forEach((o, i) => {
        const lab = document.createElement("label");
        lab.innerHTML = `layer ${i}<select data-layer="${i}">${options(o)}</select>`;
        const sel = lab.querySelector("select");
        sel.value = o;
        sel.addEventListener("change", () => { owners[i] = sel.value; draw(); send(); });
        grid.appendChild(lab);
      });
    };
    draw();
    div.update = (n) => { if (!div.contains(document.activeElement)) { owners = n.value.slice(); c = n; draw(); } };
  }
  return div;
}

// --- explore: seeds, a direction strip, add to scene --------------------------------------------------------

const STRENGTHS = [-3, -2, -1, 0, 1, 2, 3];
let picked = null;

function psi() {
  const c = S.controls.find((x) => x.path.join() === "truncation");
  return c ? c.value : 1;
}

function seeds() {
  const start = Math.max(0, +$("seed0").value || 0);
  $("seeds").innerHTML = "";
  for (let s = start; s < start + 12; s++) {
    const img = document.createElement("img");
    img.src = `/api/look?seed=${s}&psi=${psi()}&token=${enc(token)}`;
    img.title = `seed ${s}`;
    img.addEventListener("click", () => pick(img, `seed${s}`, `{seed: ${s}}`, `seed ${s}`));
    $("seeds").appendChild(img);
  }
}

function strip() {
  const latent = $("strip-latent").value, dir = $("strip-direction").value;
  $("strip").innerHTML = "";
  if (!latent || !dir) return;
  for (const s of STRENGTHS) {
    const fig = document.createElement("figure");
    fig.innerHTML = `<img title="${escapeHtml(latent)} ${s >= 0 ? "+" : ""}${s}·${escapeHtml(dir)}" src="/api/look?latent=${enc(latent)}&direction=${enc(dir)}&s=${s}&v=${S.version}&token=${enc(token)}"><figcaption>${s > 0 ? "+" : ""}${s}</figcaption>`;
    const img = fig.querySelector("img");
    const name = `${latent}_${dir.replace(/^builtin:/, "")}_${String(s).replace("-", "m")}`;
    img.addEventListener("click", () => pick(img, name, s ? `{from: ${latent}, add: {${dir}: ${s}}}` : `{from: ${latent}}`,
      `${latent} ${s >= 0 ? "+" : ""}${s}·${dir}`));
    $("strip").appendChild(fig);
  }
}

function pick(img, name, text, label) {
  document.querySelectorAll("#explore img.on").forEach((x) => x.classList.remove("on"));
  img.classList.add("on");
  picked = text;
  $("pick").textContent = label;
  $("new-name").value = name;
  $("add").disabled = false;
}

let stripKey = "";
function explore(first) {
  const fill = (sel, items) => {
    if ([...sel.options].map((o) => o.value).join() === items.join()) return;
    const cur = sel.value;
    sel.innerHTML = items.map((n) => `<option>${escapeHtml(n)}</option>`).join("");
    if (items.includes(cur)) sel.value = cur;
  };
  fill($("strip-latent"), S.latents);
  fill($("strip-direction"), S.directions);
  const key = `${S.version}|${$("strip-latent").value}|${$("strip-direction").value}`;
  if (first) seeds();
  if (key !== stripKey && !S.errors.length) { stripKey = key; strip(); }
}

// --- render --------------------------------------------------------------------------------------------------

function renderJob(job) {
  $("render-go").disabled = S.dirty || Boolean(job && job.running);
  $("render-go").title = S.dirty ? "save first: the render is of the file" : "";
  if (!job) return;
  $("render-progress").max = Math.max(1, job.total);
  $("render-progress").value = job.done;
  $("render-text").textContent = job.error ? job.error : job.running ? `${job.current} ${job.done}/${job.total} frames` : "done";
  $("render-files").innerHTML = Object.entries(job.files).map(([n, p]) =>
    `<li><a href="/outputs/${enc(n)}?token=${enc(token)}" target="_blank">${escapeHtml(p)}</a></li>`).join("");
}

// --- wiring --------------------------------------------------------------------------------------------------

$("scrub").addEventListener("input", scrubbed);
$("scrub").addEventListener("change", () => requestFrame("full"));
$("marks").addEventListener("click", (e) => {
  const f = e.target.dataset.frame;
  if (f !== undefined) { $("scrub").value = f; scrubbed(); }
});
$("render").addEventListener("change", () => { renderName = $("render").value; $("scrub").value = 0; timeline(); requestFrame("full"); });
$("play").addEventListener("click", play);
$("save").addEventListener("click", async () => applyState(await (await api("/api/save", {})).json()));
$("revert").addEventListener("click", async () => { applyState(await (await api("/api/revert", {})).json()); requestFrame("full"); });
$("seed0").addEventListener("change", seeds);
$("seeds-prev").addEventListener("click", () => { $("seed0").value = Math.max(0, +$("seed0").value - 12); seeds(); });
$("seeds-next").addEventListener("click", () => { $("seed0").value = +$("seed0").value + 12; seeds(); });
$("strip-latent").addEventListener("change", () => explore(false));
$("strip-direction").addEventListener("change", () => explore(false));
$("add").addEventListener("click", async () => {
  const name = $("new-name").value.trim();
  if (!name || !picked) return;
  applyState(await (await api("/api/add", {name, text: picked})).json());
  $("add").disabled = true;
});
$("render-go").addEventListener("click", async () => applyState(await (await api("/api/render", {})).json()));

async function poll() {
  try {
    const s = await (await api("/api/state")).json();
    if (editing) $("notice").textContent = s.busy || "";  // an edit in flight: say what the server is doing
    else if (!S || s.version !== S.version) { applyState(s); requestFrame("full"); }
    else renderJob(s.render);
  } catch (e) { $("notice").textContent = "the studio server is not answering"; }
  setTimeout(poll, 700);
}
poll();
