// The page served at GET /: one self-contained HTML file (no build step, no external requests)
// over the native job API, /uvit/v1/capabilities and /sdapi/v1/png-info. docs/serve.md.
#include "serve/server.hpp"

namespace uvit::serve {

const char* page_html() {
  return R"PAGE(<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>uvit serve</title><link rel="icon" href="data:,">
<style>
body{font:15px system-ui,sans-serif;margin:0;background:#f6f6f4;color:#222}
header{background:#233;color:#fff;padding:10px 18px}header b{font-size:18px}#model{opacity:.8;margin-left:12px}
main{display:flex;flex-wrap:wrap;gap:18px;padding:18px}
section{background:#fff;border:1px solid #ddd;border-radius:6px;padding:14px;min-width:300px}
#form{max-width:410px}
label{display:block;margin:8px 0 2px;font-size:13px;color:#555}
input,select,textarea{width:100%;box-sizing:border-box;padding:5px;font:inherit}
button{margin:10px 6px 0 0;padding:6px 14px;font:inherit;cursor:pointer}
#bar{height:14px;background:#eee;border-radius:7px;overflow:hidden;margin-top:12px}
#fill{height:100%;width:0;background:#3a7;transition:width .2s}
#status{font-size:13px;margin-top:4px;min-height:18px}
#error{color:#b00;white-space:pre-wrap;min-height:18px}
#images img{image-rendering:pixelated;width:192px;height:192px;border:1px solid #ccc;margin:4px;background:#000}
#images figure{display:inline-block;margin:4px;text-align:center;font-size:12px}
#drop{border:2px dashed #aaa;border-radius:6px;padding:18px;text-align:center;color:#666}
#drop.over{background:#eef}
pre{white-space:pre-wrap;font-size:12px;background:#f3f3f3;padding:8px;max-width:520px}
</style></head><body>
<header><b>uvit serve</b><span id="model">loading...</span></header>
<main>
<section id="form">
  <div id="classrow"><label for="cls">Class</label><input id="cls" list="classes" placeholder="class name or id"><datalist id="classes"></datalist></div>
  <div id="promptrow" hidden><label for="prompt">Prompt</label><textarea id="prompt" rows="3"></textarea>
    <label for="neg">Negative prompt</label><input id="neg"></div>
  <label for="steps">Steps</label><input id="steps" type="number" min="1" max="1000">
  <label for="w">Guidance w (1 = off)</label><input id="w" type="number" min="1" step="0.1">
  <label for="seed">Seed (-1 = random)</label><input id="seed" type="number" value="-1" min="-1">
  <label for="n">Images</label><input id="n" type="number" value="1" min="1">
  <label for="key">API key (if the server has one)</label><input id="key" type="password">
  <button id="go">Generate</button><button id="cancel" disabled>Cancel</button>
  <div id="bar"><div id="fill"></div></div><div id="status"></div><div id="error" role="alert"></div>
</section>
<section><div id="images"></div></section>
<section><div id="drop">Drop a PNG here to read its generation parameters</div><pre id="info"></pre></section>
</main>
<script>
"use strict";
const $ = id => document.getElementById(id);
let caps = null, job = null, timer = null;
function headers(json) {
  const h = {};
  if (json) h["Content-Type"] = "application/json";
  const k = $("key").value; if (k) h["Authorization"] = "Bearer " + k;
  return h;
}
async function call(method, url, body) {
  const r = await fetch(url, {method, headers: headers(body !== undefined), body: body === undefined ? undefined : JSON.stringify(body)});
  let j = null; try { j = await r.json(); } catch (e) { j = null; }
  if (!r.ok) {  // our envelope {error: {message}}, A1111's {error, detail}
    const e = j && j.error;
    throw new Error(!j ? "HTTP " + r.status : (e && e.message) || j.detail || String(e));
  }
  return j;
}
function showError(msg) { $("error").textContent = msg || ""; }
function fmt(s) { s = Math.max(0, Math.round(s)); return Math.floor(s / 60) + ":" + String(s % 60).padStart(2, "0"); }
async function init() {
  try {
    caps = await call("GET", "/uvit/v1/capabilities");
    const m = caps.model;
    $("model").textContent = m.name + " (" + m.kind + ", " + m.resolution + "x" + m.resolution + ", " + m.sha256.slice(0, 10) + ")";
    $("steps").value = caps.defaults.steps; $("w").value = caps.defaults.guidance_w;
    $("n").max = caps.limits.max_images;
    $("classrow").hidden = m.kind !== "class"; $("promptrow").hidden = m.kind !== "t2i";
    if (m.kind === "class") {
      const c = await call("GET", "/uvit/v1/classes");
      for (const e of c.classes) { const o = document.createElement("option"); o.value = e.name || String(e.id); o.label = e.id; $("classes").appendChild(o); }
      if (c.classes.length && !$("cls").value) $("cls").value = c.classes[0].name || "0";
    }
  } catch (e) { showError("cannot read the server's capabilities: " + e.message); }
}
function setBusy(b) { $("go").disabled = b; $("cancel").disabled = !b; }
async function generate() {
  showError(""); $("fill").style.width = "0";
  const body = {n: Number($("n").value), steps: Number($("steps").value), guidance_w: Number($("w").value), seed: Number($("seed").value)};
  if (caps && caps.model.kind === "class") body.class = $("cls").value;
  if (caps && caps.model.kind === "t2i") { body.prompt = $("prompt").value; if ($("neg").value) body.negative_prompt = $("neg").value; }
  setBusy(true);
  try {
    job = await call("POST", "/uvit/v1/jobs", body);
    $("status").textContent = "queued (seed " + job.seed + ")";
    poll();
  } catch (e) { setBusy(false); $("status").textContent = ""; showError(e.message); }
}
async function poll() {
  if (!job) return;
  let j;
  try { j = await call("GET", job.poll_url); } catch (e) { setBusy(false); showError(e.message); job = null; return; }
  const p = j.progress;
  $("fill").style.width = (100 * p.fraction).toFixed(1) + "%";
  if (j.status === "generating") $("status").textContent = "step " + p.step + "/" + p.steps + (p.eta_s !== undefined ? " - ETA " + fmt(p.eta_s) : "");
  else if (j.status === "queued") $("status").textContent = "queued, position " + j.queue_position;
  if (j.status === "generating" && j.preview) {  // the live preview of the first image
    let im = $("preview");
    if (!im) { im = document.createElement("img"); im.id = "preview"; im.alt = "preview"; $("images").replaceChildren(im); }
    im.src = "data:image/png;base64," + j.preview;
  }
  if (j.status === "completed") { show(j); done("done in " + (j.completed - j.started).toFixed(2) + " s"); }
  else if (j.status === "cancelled") done("cancelled");
  else if (j.status === "failed") { done("failed"); showError(j.error ? j.error.message : "failed"); }
  else timer = setTimeout(poll, 250);
}
function done(text) { $("status").textContent = text; setBusy(false); job = null; }
function show(j) {
  const box = $("images"); box.innerHTML = "";
  for (const im of j.result.images) {
    const f = document.createElement("figure"), img = document.createElement("img"), a = document.createElement("a");
    img.src = "data:image/png;base64," + im.b64_json; img.alt = im.parameters.split("\n")[0];
    img.title = im.parameters;
    a.href = img.src; a.download = "uvit-" + im.seed + "-" + im.sample_index + ".png"; a.textContent = "download";
    f.appendChild(img); f.appendChild(document.createElement("br")); f.appendChild(a);
    box.appendChild(f);
  }
}
async function cancel() {
  if (!job) return;
  try { await call("POST", "/uvit/v1/jobs/" + job.id + "/cancel", {}); } catch (e) { showError(e.message); }
}
async function readPng(file) {
  const buf = new Uint8Array(await file.arrayBuffer());
  let s = ""; for (let i = 0; i < buf.length; i += 0x8000) s += String.fromCharCode.apply(null, buf.subarray(i, i + 0x8000));
  try {
    const r = await call("POST", "/sdapi/v1/png-info", {image: btoa(s)});
    $("info").textContent = r.info ? r.info : "(no parameters in " + file.name + ")";
    showError("");
  } catch (e) { $("info").textContent = ""; showError(e.message); }
}
$("go").onclick = generate; $("cancel").onclick = cancel;
const drop = $("drop");
drop.ondragover = e => { e.preventDefault(); drop.classList.add("over"); };
drop.ondragleave = () => drop.classList.remove("over");
drop.ondrop = e => { e.preventDefault(); drop.classList.remove("over"); if (e.dataTransfer.files.length) readPng(e.dataTransfer.files[0]); };
init();
</script></body></html>
)PAGE";
}

}  // namespace uvit::serve
