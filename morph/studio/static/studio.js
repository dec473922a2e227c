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
  wanted = {render: renderName, i: +$("scrub").value, quality, v: S.version, t0, latent: viewLatent, saved: showSaved};
  pump();
}

async function pump() {
  if (inflight >= (playing ? PLAY_DEPTH : 1) || !wanted) return;
  const w = wanted; wanted = null; inflight++;
  w.seq = ++sent;
  try {
    const r = await api(w.latent ? `/api/look?latent=${enc(w.latent)}&v=${w.v}`
      : `/api/${w.saved ? "saved" : "frame"}?render=${enc(w.render)}&i=${w.i}&quality=${w.quality}&v=${w.v}`);
    if (!r.ok && w.saved) $("notice").textContent = await r.clone().text();
    if (r.ok && w.seq > shownSeq) {
      const url = URL.createObjectURL(await r.blob());
      const img = $("frame"), old = img.src;
      await new Promise((done) => { img.onload = done; img.onerror = done; img.src = url; });
      if (old.startsWith("blob:")) URL.revokeObjectURL(old);
      shownSeq = Math.max(shownSeq, w.seq);
      const ms = performance.now() - w.t0;
      studio.shown = w.latent ? {latent: w.latent, version: w.v, quality: "still", ms}
        : {render: w.render, index: w.i, quality: w.quality, version: w.v, ms, saved: w.saved};
      $("view").classList.toggle("saved", Boolean(w.saved && !w.latent));
      Object.assign(img.dataset, {render: w.render, index: w.i, quality: w.quality, version: w.v, latent: w.latent || ""});
      if (w.quality === "preview" && !playing) studio.latencies.push(ms);
      if (playing) studio.played = (studio.played || 0) + 1;
      $("latency").textContent = w.latent ? `latent ${w.latent} (a still: no keyframe of ${w.render})`
        : `frame ${w.i} (${w.quality}) shown in ${ms.toFixed(0)} ms`;
    }
  } finally {
    inflight--;
    pump();
  }
}

function scrubbed() {
  viewLatent = null;
  syncAudio();
  drawSound();
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
let loop = null;              // [first, last] frame of the range played over and over, or null: the whole render
function play() {
  playing = !playing;
  $("play").textContent = playing ? "❚❚ Pause" : "▶ Play";
  const audio = $("audio"), r = currentRender();
  if (!playing) { audio.pause(); syncAudio(); requestFrame("full"); return; }
  viewLatent = null;
  const [lo, hi] = loop || [0, r.frames - 1];
  if (+$("scrub").value < lo || +$("scrub").value > hi) $("scrub").value = lo;
  const start = performance.now(), first = +$("scrub").value, played = studio.played || 0;
  const withSound = sound && sound.audio && audio.readyState >= 1;
  if (withSound) { audio.currentTime = first / r.fps; audio.play().catch(() => {}); }
  let last = -1;
  const tick = (now) => {
    if (!playing) return;
    let i = lo + (first - lo + Math.floor((now - start) * r.fps / 1000)) % (hi - lo + 1);
    if (withSound) {  // the sound is the clock; past the range's end (or the sound's) both go back to its start
      i = Math.floor(audio.currentTime * r.fps + 1e-6);
      if (audio.ended || i > hi) { audio.currentTime = lo / r.fps; audio.play().catch(() => {}); i = lo; }
    }
    if (inflight < PLAY_DEPTH && i !== last) {
      last = i; $("scrub").value = i; readout(); drawSound(); requestFrame("preview");
      if (studio.playedFrames) studio.playedFrames.push(i);
    }
    $("fps").textContent = ` · playing at ${(((studio.played || 0) - played) * 1000 / (now - start)).toFixed(1)} of ${r.fps} fps`;
    requestAnimationFrame(tick);
  };
  requestAnimationFrame(tick);
}

// [ and ] set the loop's first and last frame at the current one; \ plays the whole render again.
function setLoop(end) {
  const r = currentRender(), i = +$("scrub").value;
  if (!r) return;
  const [lo, hi] = loop || [0, r.frames - 1];
  loop = end === null ? null : end === 0 ? [i, Math.max(i, hi)] : [Math.min(lo, i), i];
  const last = Math.max(1, r.frames - 1);
  $("loop").hidden = !loop;
  if (loop) Object.assign($("loop").style, {left: `${100 * loop[0] / last}%`, width: `${100 * (loop[1] - loop[0]) / last}%`});
  $("loop").title = loop ? `loop: frames ${loop[0]}–${loop[1]} (\\ clears)` : "";
}

function step(by) {
  const r = currentRender();
  if (!r) return;
  if (playing) play();
  $("scrub").value = Math.max(0, Math.min(r.frames - 1, +$("scrub").value + by));
  scrubbed();
}

// --- sound: the <audio> element follows the timeline; waveform, followed features, beats and onsets under it --

let sound = null, soundFor = "";
async function loadSound() {
  const r = currentRender();
  if (!r) return;
  const key = `${r.name}|${S.version}`;
  if (key === soundFor) return;
  soundFor = key;
  const got = await (await api(`/api/sound?render=${enc(r.name)}&v=${S.version}`)).json();
  if (soundFor !== key) return;
  const audio = $("audio"), src = got.audio ? `/api/audio?render=${enc(r.name)}&token=${enc(token)}` : "";
  sound = got;
  if (!got.audio) { audio.removeAttribute("src"); audio.hidden = true; }
  else if (audio.dataset.src !== src) { audio.src = src; audio.dataset.src = src; audio.hidden = false; audio.load(); }
  $("sound").hidden = !got.audio;
  $("sound-legend").innerHTML = got.audio ? [`<span class="wave">waveform of ${escapeHtml(got.file)}</span>`,
    ...got.curves.map((c, k) => `<span style="color:${CURVE_COLOURS[k % CURVE_COLOURS.length]}">${escapeHtml(c.label)}</span>`),
    `<span class="beat">beats</span>`, `<span class="onset">onsets</span>`].join(" · ") : "";
  drawSound();
}

function syncAudio() {
  const r = currentRender(), audio = $("audio");
  if (!r || !sound || !sound.audio || audio.readyState < 1 || playing) return;
  audio.currentTime = +$("scrub").value / r.fps;
}

const CURVE_COLOURS = ["#5ec8f2", "#9be36d", "#f29ee8", "#f2d45e"];
function drawSound() {
  const canvas = $("sound");
  if (!sound || !sound.audio) return;
  const g = canvas.getContext("2d"), W = canvas.width, H = canvas.height, n = sound.frames;
  const x = (i) => (i + 0.5) * W / n, peak = Math.max(1e-6, ...sound.wave);
  g.clearRect(0, 0, W, H);
  g.fillStyle = "#59627a";
  sound.wave.forEach((v, i) => { const h = v / peak * (H - 4); g.fillRect(x(i) - 0.5 * W / n, (H - h) / 2, Math.max(1, W / n), h); });
  sound.curves.forEach((c, k) => {
    g.strokeStyle = CURVE_COLOURS[k % CURVE_COLOURS.length]; g.lineWidth = 1.25; g.globalAlpha = 0.85; g.beginPath();
    c.gain.forEach((v, i) => (i ? g.lineTo : g.moveTo).call(g, x(i), H - 2 - v * (H - 4)));
    g.stroke();
    g.globalAlpha = 1;
  });
  g.fillStyle = "#e8a33d";
  for (const f of sound.beats) g.fillRect(x(f) - 1, 0, 2, 8);
  g.fillStyle = "#c9ced8";
  for (const f of sound.onsets) g.fillRect(x(f) - 0.5, H - 5, 1, 5);
  g.fillStyle = "#fff";
  g.fillRect(x(+$("scrub").value) - 0.5, 0, 1, H);
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
  loadSound();
  const h = s.history || {undo: 0, redo: 0};
  if (s.history) { $("undo").disabled = !h.undo; $("redo").disabled = !h.redo; }
}

function timeline() {
  const r = currentRender();
  if (!r) return;
  const scrub = $("scrub");
  scrub.max = r.frames - 1;
  if (+scrub.value > r.frames - 1) scrub.value = r.frames - 1;
  $("marks").innerHTML = r.keyframes.map((f, k) =>
    `<span class="mark${k === selectedKey ? " on" : ""}" data-frame="${f}" data-key="${k}" style="left:${(100 * f / Math.max(1, r.frames - 1)).toFixed(2)}%" title="${escapeHtml(r.keys[k])} at frame ${f} (click: select; Delete: remove)">${escapeHtml(r.keys[k])}</span>`).join("");
  for (const id of ["key-remove", "key-earlier", "key-later"]) $(id).disabled = selectedKey === null || selectedKey >= r.keyframes.length;
  readout();
}

function escapeHtml(t) { return String(t).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`); }

// --- controls: sliders and pickers that edit the scene -------------------------------------------------------

function format(c, v) {
  const n = c.unit === "f" ? Math.round(v) : Number((+v).toFixed(3));
  return c.unit ? `${n}${c.unit}` : String(n);
}

// Every edit goes to /api/edits: a list of edits made as one undo step. The edits of one gesture (a slider
// drag) share its id, so the server keeps them as one step; the latest drag position wins.
let editWanted = null, gesture = 0;
function newGesture() { gesture++; }
async function sendEdit(edits, then) {
  editWanted = {body: {edits, gesture: `g${gesture}`}, then};
  if (editing) return;
  editing++;
  try {
    while (editWanted) {
      const e = editWanted; editWanted = null;
      const s = await (await api("/api/edits", e.body)).json();
      applyState(s);
      requestFrame(e.then || "preview");
    }
  } finally { editing--; }
}

// A control's edit: the edits it lists in ``before`` (writing out a short follow:, a missing range) first.
function editOf(c, value) { return [...(c.before || []), {path: c.path, value}]; }

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
  div.addEventListener("pointerdown", () => { newGesture(); touched(c); }, true);
  div.addEventListener("focusin", () => touched(c));
  if (c.kind === "number") {
    div.className = "control";
    div.innerHTML = `<span>${escapeHtml(c.label)}</span><input type="range"><input class="num" type="text">`;
    const [range, num] = div.querySelectorAll("input");
    const bounds = (n) => (n.min === null ? "" : `from ${n.min}`) + (n.max === null ? "" : ` to ${n.max}`);
    const inBounds = (n, v) => (n.min === null || v >= n.min) && (n.max === null || v <= n.max);
    range.step = c.step;
    range.addEventListener("input", () => { num.value = format(c, range.value); sendEdit(editOf(c, num.value)); });
    range.addEventListener("change", () => sendEdit(editOf(c, format(c, range.value)), "full"));
    num.addEventListener("change", () => {
      newGesture();
      const v = parseFloat(num.value);
      num.classList.toggle("bad", Number.isFinite(v) && !inBounds(c, v));
      sendEdit(editOf(c, num.value), "full");
    });
    div.title = `${c.path.join(".")}: ${bounds(c) || "any number"}`;
    div.update = (n) => {
      c = n;
      range.min = Math.min(n.span[0], n.value); range.max = Math.max(n.span[1], n.value);
      if (document.activeElement !== range) range.value = n.value;
      if (document.activeElement !== num && !S.errors.length) num.value = format(n, n.value);
    };
  } else if (c.kind === "choice") {
    div.className = "control";
    div.innerHTML = `<span>${escapeHtml(c.label)}</span><select>${c.options.map((o) => `<option>${escapeHtml(o)}</option>`).join("")}</select><span></span>`;
    const sel = div.querySelector("select");
    sel.addEventListener("change", () => { newGesture(); sendEdit(editOf(c, sel.value), "full"); });
    div.update = (n) => { c = n; if (document.activeElement !== sel) sel.value = n.value; };
  } else if (c.kind === "camera") {
    div.className = "camera";
    div.innerHTML = `<div class="small">${escapeHtml(c.label)}</div><canvas width="160" height="160"></canvas><span class="small"></span>`;
    const pad = div.querySelector("canvas"), text = div.querySelector("span");
    let pose = c.value, drag = null;
    const draw = () => {
      const g = pad.getContext("2d"), [lo, hi] = c.span, x = (pose.translate[0] - lo) / (hi - lo) * 160,
        y = (pose.translate[1] - lo) / (hi - lo) * 160;
      g.clearRect(0, 0, 160, 160); g.strokeStyle = "#343a46"; g.strokeRect(0.5, 0.5, 159, 159);
      g.beginPath(); g.moveTo(80, 0); g.lineTo(80, 160); g.moveTo(0, 80); g.lineTo(160, 80); g.stroke();
      g.save(); g.translate(x, y); g.rotate(pose.rotate * Math.PI / 180);
      g.strokeStyle = "#e8a33d"; g.strokeRect(-10, -10, 20, 20); g.restore();
      text.textContent = `translate [${pose.translate.map((v) => v.toFixed(3)).join(", ")}] · rotate ${pose.rotate.toFixed(1)}°`;
    };
    const send = (then) => sendEdit([{path: [...c.path, "translate"], value: `[${pose.translate.map((v) => +v.toFixed(4)).join(", ")}]`},
      {path: [...c.path, "rotate"], value: String(+pose.rotate.toFixed(2))}], then);
    pad.addEventListener("pointerdown", (e) => { drag = {x: e.offsetX, y: e.offsetY, pose: JSON.parse(JSON.stringify(pose))}; pad.setPointerCapture(e.pointerId); });
    pad.addEventListener("pointermove", (e) => {
      if (!drag) return;
      const [lo, hi] = c.span, k = (hi - lo) / 160;
      if (e.shiftKey) pose.rotate = Math.max(-c.rotate_max, Math.min(c.rotate_max, drag.pose.rotate + (e.offsetX - drag.x)));
      else pose.translate = [0, 1].map((i) => Math.max(c.min, Math.min(c.max, drag.pose.translate[i] + ((i ? e.offsetY - drag.y : e.offsetX - drag.x) * k))));
      draw(); send();
    });
    pad.addEventListener("pointerup", () => { drag = null; send("full"); });
    draw();
    div.update = (n) => { c = n; if (!drag) { pose = n.value; draw(); } };
  } else if (c.kind === "mix") {
    div.innerHTML = `<div class="small">${escapeHtml(c.label)}: a group sets all its layers</div><div class="mix"></div>`;
    const grid = div.querySelector(".mix");
    let owners = c.value.slice();
    const options = (cur) => [...new Set([cur, ...c.options])].map((o) => `<option>${escapeHtml(o)}</option>`).join("");
    const send = () => { newGesture(); sendEdit([{path: c.path, owners}], "full"); };
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

// --- the view follows the edit: a latent's control shows that latent, a render's control that render ----------

let viewLatent = null;        // a latent shown as a still (it is no keyframe of the render on the timeline)
function touched(c) {
  const m = /^render (.*)$/.exec(c.group || "");
  if (m && m[1] !== renderName && S.renders.some((r) => r.name === m[1])) {
    renderName = m[1]; $("render").value = renderName; $("scrub").value = 0; timeline(); loadSound(); requestFrame("full");
  }
  if (!c.latent) { showChanged([]); return; }
  showLatent(c.latent);
}

function showLatent(name) {
  const r = currentRender(), spans = changedSpans(name), i = +$("scrub").value;
  if (S.latents.includes(name)) $("mix-latent").value = name;
  showChanged(spans);
  if (spans.length) {  // a keyframe of the render on the timeline: go to it unless the view already shows it
    viewLatent = null;
    if (!spans.some(([a, b]) => a < i && i < b)) { $("scrub").value = r.keyframes[r.keys.indexOf(name)]; scrubbed(); }
    return;
  }
  viewLatent = name;  // else a still of it
  requestFrame("full");
}

// The frames an edit of latent ``name`` changes: from the keyframe before each of its keyframes to the one after.
function changedSpans(name) {
  const r = currentRender();
  if (!r || !name) return [];
  return r.keys.flatMap((k, i) => k !== name ? [] :
    [[i ? r.keyframes[i - 1] : r.keyframes[i], i + 1 < r.keyframes.length ? r.keyframes[i + 1] : r.frames - 1]]);
}

function showChanged(spans) {
  const r = currentRender(), box = $("changed"), last = Math.max(1, r ? r.frames - 1 : 1);
  box.innerHTML = spans.map(([a, b]) => `<span style="left:${100 * a / last}%;width:${Math.max(0.5, 100 * (b - a) / last)}%" title="frames ${a}–${b} change with this edit"></span>`).join("");
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
  fill($("key-latent"), S.latents);
  fill($("mix-latent"), S.latents);
  for (const sel of document.querySelectorAll("#mix-rows select")) fill(sel, S.directions);
  if (first) addMixRow();
  mixView();
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
  const shown = Object.entries(job.files).map(([n, p]) =>
    `<li><a href="/outputs/${enc(n)}?token=${enc(token)}" target="_blank">${escapeHtml(p)}</a> <button data-play="${escapeHtml(n)}" data-gif="${/\.gif$/i.test(p)}">▶ here</button></li>`).join("");
  if ($("render-files").innerHTML !== shown) $("render-files").innerHTML = shown;
}

// A finished render played on the page (video with its sound; a GIF as an image).
$("render-files").addEventListener("click", (e) => {
  const name = e.target.dataset.play;
  if (name === undefined) return;
  const url = `/outputs/${enc(name)}?token=${enc(token)}`, gif = e.target.dataset.gif === "true";
  $("player").hidden = gif; $("player-gif").hidden = !gif;
  if (gif) { $("player").pause(); $("player-gif").src = url; } else { $("player").src = url; $("player").play().catch(() => {}); }
});

// A/B: the picture as the saved file draws it, against the edits (B, or the button).
let showSaved = false;
function toggleSaved() {
  showSaved = !showSaved;
  $("ab").classList.toggle("on", showSaved);
  $("ab").textContent = showSaved ? "B: saved file" : "A: edits";
  requestFrame("full");
}

// --- editor's habits: undo / redo, keyframes on the timeline, snapshots, keyboard ----------------------------

let selectedKey = null;       // the keyframe mark clicked last
async function post(path, body) {
  applyState(await (await api(path, body)).json());
  requestFrame("full");
}
const undo = () => post("/api/undo", {});
const redo = () => post("/api/redo", {});

function addKeyframe() {
  const r = currentRender(), latent = $("key-latent").value;
  if (r && latent) post("/api/keyframe", {render: r.name, frame: +$("scrub").value, latent});
}

function removeKeyframe() {
  const r = currentRender();
  if (!r || selectedKey === null) return;
  const k = selectedKey;
  selectedKey = null;
  post("/api/keyframe", {render: r.name, remove: k});
}

function moveKeyframe(by) {
  const r = currentRender();
  if (!r || selectedKey === null) return;
  const k = selectedKey;
  selectedKey = k + by;
  post("/api/keyframe", {render: r.name, move: k, by});
}

async function snapshot() {
  const r = currentRender();
  if (!r) return;
  const got = await api(`/api/snapshot?render=${enc(r.name)}&i=${+$("scrub").value}&v=${S.version}`);
  if (!got.ok) { $("notice").textContent = await got.text(); return; }
  const name = (got.headers.get("Content-Disposition") || "").replace(/.*filename="([^"]+)".*/, "$1") || "snapshot.png";
  if (studio.snapshot) URL.revokeObjectURL(studio.snapshot.url);
  studio.snapshot = {url: URL.createObjectURL(await got.blob()), name};
  const a = document.createElement("a");
  Object.assign(a, {href: studio.snapshot.url, download: name});
  a.click();
  $("notice").textContent = `snapshot ${name} (the latent and settings are in its text chunks)`;
}

const SHORTCUTS = [["Space", "play / pause (with the sound)"], ["← / →", "one frame back / on"],
  ["Shift + ← / →", "one second back / on"], ["Home / End", "first / last frame"], ["K", "add the picked latent as a keyframe here"],
  ["Delete", "remove the selected keyframe"], ["Alt + ← / →", "move the selected keyframe one place earlier / later"], ["[ / ]", "loop from / to this frame"], ["\\", "play the whole render again"], ["S", "snapshot: PNG with the latent and settings"], ["B", "A/B: the saved file's frame against the edits"],
  ["Ctrl+Z / Ctrl+Shift+Z (Ctrl+Y)", "undo / redo"], ["Ctrl+S", "save"], ["?", "this list"]];
$("shortcuts").innerHTML = `<h3>Keyboard</h3><table>${SHORTCUTS.map(([k, what]) => `<tr><td><kbd>${k}</kbd></td><td>${what}</td></tr>`).join("")}</table><p class="small">Esc or ? closes</p>`;

document.addEventListener("keydown", (e) => {
  // keys go to what has the focus where it takes them (a text box, a picker, a slider other than the timeline)
  const t = e.target, typing = t.tagName === "TEXTAREA" || t.tagName === "SELECT" || (t.tagName === "INPUT" && t.id !== "scrub");
  const ctrl = e.ctrlKey || e.metaKey, key = e.key.toLowerCase();
  if (ctrl && key === "z") { e.preventDefault(); (e.shiftKey ? redo : undo)(); return; }
  if (ctrl && key === "y") { e.preventDefault(); redo(); return; }
  if (ctrl && key === "s") { e.preventDefault(); $("save").click(); return; }
  if (!typing && e.altKey && ["arrowleft", "arrowright"].includes(key)) { e.preventDefault(); moveKeyframe(key === "arrowleft" ? -1 : 1); return; }
  if (typing || ctrl || e.altKey) return;
  const r = currentRender(), second = r ? Math.round(r.fps) : 1;
  const actions = {" ": play, "arrowleft": () => step(e.shiftKey ? -second : -1), "arrowright": () => step(e.shiftKey ? second : 1),
    "home": () => step(-Infinity), "end": () => step(Infinity), "k": addKeyframe, "delete": removeKeyframe,
    "s": snapshot, "b": toggleSaved, "[": () => setLoop(0), "]": () => setLoop(1), "\\": () => setLoop(null), "?": () => { $("shortcuts").hidden = !$("shortcuts").hidden; }, "escape": () => { $("shortcuts").hidden = true; }};
  const act = actions[key];
  if (act && t.tagName === "BUTTON") t.blur();  // else Space would also press the button
  if (act) { e.preventDefault(); act(); }
});

// --- direction mixer: several directions on the latent in view, each on a layer range --------------------------

function addMixRow(direction) {
  const n = S.model.num_ws, row = document.createElement("div");
  row.className = "mixrow";
  row.innerHTML = `<select></select><input type="range" min="-5" max="5" step="0.05" value="0"><input class="num" type="text" value="0">
    <span class="layers">layers <input class="layer" type="number" min="0" max="${n - 1}" value="0">–<input class="layer" type="number" min="0" max="${n - 1}" value="${n - 1}"></span><button title="remove this direction">✕</button>`;
  const [sel] = row.querySelectorAll("select"), [range, num, a, b] = row.querySelectorAll("input");
  sel.innerHTML = S.directions.map((d) => `<option>${escapeHtml(d)}</option>`).join("");
  if (direction) sel.value = direction;
  range.addEventListener("input", () => { num.value = range.value; mixView(); });
  num.addEventListener("change", () => { range.value = num.value; mixView(); });
  for (const el of [sel, a, b]) el.addEventListener("change", mixView);
  row.querySelector("button").addEventListener("click", () => { row.remove(); mixView(); });
  $("mix-rows").appendChild(row);
  mixView();
}

// Each row as {direction, strength, first, last}; rows at strength 0 do nothing and are left out.
function mixRows() {
  const n = S.model.num_ws;
  return [...document.querySelectorAll("#mix-rows .mixrow")].map((row) => {
    const [sel] = row.querySelectorAll("select"), [, num, a, b] = row.querySelectorAll("input");
    const first = Math.max(0, Math.min(n - 1, Math.round(+a.value))), last = Math.max(first, Math.min(n - 1, Math.round(+b.value)));
    return {direction: sel.value, strength: +num.value, first, last};
  }).filter((m) => m.direction && Number.isFinite(m.strength) && m.strength !== 0);
}

function mixSource() {
  const seed = $("seed-drag-on").checked;
  return seed ? `seed=${+$("seed-drag").value}&psi=${psi()}` : `latent=${enc($("mix-latent").value)}`;
}

let mixTimer = null;
function mixView() {
  clearTimeout(mixTimer);
  mixTimer = setTimeout(() => {
    if (!S || S.errors.length || (!$("seed-drag-on").checked && !$("mix-latent").value)) return;
    const ds = mixRows().map((m) => `&d=${enc(`${m.direction}:${m.strength}:${m.first}-${m.last}`)}`).join("");
    const url = `/api/mix?${mixSource()}${ds}&v=${S.version}&token=${enc(token)}`;
    if ($("mix-view").dataset.url !== url) { $("mix-view").dataset.url = url; $("mix-view").src = url; }
    $("seed-drag-text").textContent = `seed ${(+$("seed-drag").value).toFixed(2)}`;
  }, 30);
}

// The mix as latents: one per distinct layer range, each {from: the one before, add: {...}, layers: a-b}.
function mixEdits(name) {
  const n = S.model.num_ws, rows = mixRows(), groups = new Map(), edits = [];
  let from = $("mix-latent").value;
  if ($("seed-drag-on").checked) {
    const x = +$("seed-drag").value, low = Math.floor(x), u = +(x - low).toFixed(3);
    for (const s of u ? [low, low + 1] : [low]) if (!S.latents.includes(`seed${s}`)) edits.push({path: ["latents", `seed${s}`], value: `{seed: ${s}}`});
    const point = u ? `{blend: {seed${low}: ${+(1 - u).toFixed(3)}, seed${low + 1}: ${u}}}` : `{from: seed${low}}`;
    from = rows.length ? `${name}_point` : name;  // the point between the seeds, then the directions on it
    edits.push({path: ["latents", from], value: point});
    if (!rows.length) return edits;
  }
  for (const m of rows) {
    const k = m.first === 0 && m.last === n - 1 ? "all" : m.first === m.last ? `${m.first}` : `${m.first}-${m.last}`;
    if (!groups.has(k)) groups.set(k, []);
    groups.get(k).push(m);
  }
  [...groups].forEach(([layers, ms], i) => {
    const own = i === groups.size - 1 ? name : `${name}_${i + 1}`;
    const add = ms.map((m) => `${m.direction}: ${m.strength}`).join(", ");
    edits.push({path: ["latents", own], value: `{from: ${from}, add: {${add}}${layers === "all" ? "" : `, layers: ${layers}`}}`});
    from = own;
  });
  if (!groups.size && from !== name) edits.push({path: ["latents", name], value: `{from: ${from}}`});
  return edits;
}

async function saveMix() {
  const name = $("mix-name").value.trim();
  if (!name) { $("mix-name").focus(); return; }
  newGesture();
  applyState(await (await api("/api/edits", {edits: mixEdits(name), gesture: `g${gesture}`})).json());
  if (!S.errors.length) showLatent(name);
}

// --- wiring --------------------------------------------------------------------------------------------------

$("scrub").addEventListener("input", scrubbed);
$("scrub").addEventListener("change", () => requestFrame("full"));
$("marks").addEventListener("click", (e) => {
  const f = e.target.dataset.frame;
  if (f !== undefined) { selectedKey = +e.target.dataset.key; $("scrub").value = f; scrubbed(); timeline(); }
});
$("render").addEventListener("change", () => { setLoop(null); renderName = $("render").value; $("scrub").value = 0; selectedKey = null; timeline(); loadSound(); requestFrame("full"); });
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
  newGesture();
  applyState(await (await api("/api/edits", {edits: [{path: ["latents", name], value: picked}], gesture: `g${gesture}`})).json());
  $("add").disabled = true;
});
$("undo").addEventListener("click", undo);
$("redo").addEventListener("click", redo);
$("key-add").addEventListener("click", addKeyframe);
$("key-remove").addEventListener("click", removeKeyframe);
$("key-earlier").addEventListener("click", () => moveKeyframe(-1));
$("key-later").addEventListener("click", () => moveKeyframe(1));
$("snapshot").addEventListener("click", snapshot);
$("ab").addEventListener("click", toggleSaved);
$("help").addEventListener("click", () => { $("shortcuts").hidden = !$("shortcuts").hidden; });
$("mix-add").addEventListener("click", () => addMixRow());
$("mix-latent").addEventListener("change", () => { $("seed-drag-on").checked = false; mixView(); });
$("seed-drag").addEventListener("input", () => { $("seed-drag-on").checked = true; mixView(); });
$("seed-drag-on").addEventListener("change", mixView);
$("mix-save").addEventListener("click", saveMix);
$("sound").addEventListener("click", (e) => {
  const r = currentRender();
  if (r) { $("scrub").value = Math.floor(e.offsetX / $("sound").clientWidth * r.frames); scrubbed(); }
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
