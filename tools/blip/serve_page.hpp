// tools/blip/serve_page.hpp — the web page `blip serve` answers GET / with: a search box, a
// re-rank toggle, an image drop zone (or file picker) and a grid of thumbnails with scores.
//
// Keyboard only: every control is a native form element or a focusable element with a visible
// focus ring; Enter searches, the drop zone opens the file picker on Enter or Space, results
// are links in reading order, and the status line is an aria-live region. `/?q=TEXT` fills the
// box and searches on load (links to a search; the browser test uses it). When the grid is
// complete (every thumbnail loaded or failed) <body> gets data-state="done".
#pragma once

namespace blip::cli {

inline constexpr const char* kServePage = R"HTML(<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>blip search</title>
<style>
  :root { font-family: system-ui, "DejaVu Sans", sans-serif; color: #1b1b1b; background: #fafafa; }
  body { margin: 0 auto; max-width: 1100px; padding: 1.2rem; }
  h1 { font-size: 1.3rem; margin: 0 0 .8rem; }
  form { display: flex; flex-wrap: wrap; gap: .6rem; align-items: center; }
  input[type=search] { flex: 1 1 22rem; font-size: 1.05rem; padding: .45rem .6rem; border: 1px solid #888; border-radius: 6px; }
  button, select { font-size: 1rem; padding: .4rem .8rem; border-radius: 6px; border: 1px solid #666; background: #fff; }
  :focus-visible { outline: 3px solid #1a5fd0; outline-offset: 2px; }
  #drop { margin-top: .7rem; padding: .7rem; border: 2px dashed #999; border-radius: 8px; text-align: center; cursor: pointer; }
  #drop.over { border-color: #1a5fd0; background: #eef3fd; }
  #status { min-height: 1.4rem; margin: .7rem 0; color: #444; }
  #grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(170px, 1fr)); gap: .8rem; list-style: none; padding: 0; margin: 0; }
  .hit a { display: block; color: inherit; text-decoration: none; border-radius: 8px; background: #fff; box-shadow: 0 1px 3px #0003; overflow: hidden; }
  .hit img { display: block; width: 100%; aspect-ratio: 1; object-fit: cover; background: #ddd; }
  .hit .text { padding: .6rem; min-height: 4rem; }
  .hit figcaption { padding: .35rem .5rem; font-size: .85rem; }
  .score { font-variant-numeric: tabular-nums; font-weight: 600; }
  .sr { position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0); }
  .name { display: block; color: #555; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
</style>
</head>
<body data-state="idle">
<h1>blip search <small id="info"></small></h1>
<form id="form" role="search">
  <label for="q" class="sr">Query</label>
  <input id="q" name="q" type="search" placeholder="Describe what you are looking for" autocomplete="off" autofocus>
  <label>Results <select id="n"><option>12</option><option>24</option><option>48</option></select></label>
  <label><input id="rerank" type="checkbox"> Re-rank the top 16 by ITM</label>
  <button type="submit">Search</button>
</form>
<div id="drop" tabindex="0" role="button" aria-describedby="drophelp">
  <span id="drophelp">Search by image: drop an image here, or press Enter to choose a file</span>
  <input id="file" type="file" accept="image/*" hidden>
</div>
<p id="status" aria-live="polite"></p>
<ul id="grid" aria-label="Results"></ul>
<script>
"use strict";
const $ = (id) => document.getElementById(id);
const grid = $("grid"), status = $("status");
let kind = "images";
fetch("/healthz").then(r => r.json()).then(h => {
  kind = h.kind;
  $("info").textContent = "— " + h.entries + " " + h.kind + (h.search ? ", " + h.search : "");
}).catch(() => {});

function show(data, took) {
  grid.replaceChildren();
  const results = data.results || [];
  let pending = 0;
  const settle = () => { if (--pending <= 0) document.body.dataset.state = "done"; };
  results.forEach((r, i) => {
    const li = document.createElement("li");
    li.className = "hit";
    const fig = document.createElement("figure");
    fig.style.margin = 0;
    const a = document.createElement("a");
    const cap = document.createElement("figcaption");
    const score = r.reranked ? "ITM " + r.itm.toFixed(3) + " + sim " + r.similarity.toFixed(3) : "sim " + r.similarity.toFixed(3);
    if (r.entry !== undefined && r.text === undefined) {
      a.href = "/thumb?path=" + encodeURIComponent(r.entry) + "&size=full";
      const img = new Image();
      img.alt = r.entry;
      img.loading = "eager";
      pending++;
      img.onload = img.onerror = settle;
      img.src = "/thumb?path=" + encodeURIComponent(r.entry);
      a.appendChild(img);
      cap.innerHTML = "<span class=score></span><span class=name></span>";
      cap.querySelector(".name").textContent = r.entry;
    } else {
      a.href = "#";
      const t = document.createElement("div");
      t.className = "text";
      t.textContent = r.text;
      a.appendChild(t);
      cap.innerHTML = "<span class=score></span>";
    }
    cap.querySelector(".score").textContent = (i + 1) + ". " + score;
    a.setAttribute("aria-label", (i + 1) + ": " + (r.entry || r.text) + ", " + score);
    a.appendChild(cap);
    fig.appendChild(a);
    li.appendChild(fig);
    grid.appendChild(li);
  });
  status.textContent = results.length + " results for " + data.query + " in " + took + " ms";
  if (pending === 0) document.body.dataset.state = "done";
}

async function run(request) {
  document.body.dataset.state = "busy";
  status.textContent = "Searching…";
  const t0 = performance.now();
  try {
    const r = await fetch(request.url, request.init);
    const data = await r.json();
    if (!r.ok) throw new Error(data.error || r.statusText);
    show(data, Math.round(performance.now() - t0));
  } catch (e) {
    grid.replaceChildren();
    status.textContent = "Error: " + e.message;
    document.body.dataset.state = "done";
  }
}

function params() {
  return "n=" + $("n").value + "&rerank=" + ($("rerank").checked ? 16 : 0);
}
$("form").addEventListener("submit", (e) => {
  e.preventDefault();
  const q = $("q").value.trim();
  if (!q) { status.textContent = "Type a query first."; return; }
  history.replaceState(null, "", "/?q=" + encodeURIComponent(q));
  run({url: "/api/search?q=" + encodeURIComponent(q) + "&" + params()});
});
function upload(file) {
  if (!file) return;
  const rerank = kind === "texts" && $("rerank").checked ? 16 : 0;
  run({url: "/api/search?n=" + $("n").value + "&rerank=" + rerank,
       init: {method: "POST", headers: {"Content-Type": file.type || "application/octet-stream"}, body: file}});
}
const drop = $("drop"), file = $("file");
drop.addEventListener("click", () => file.click());
drop.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); file.click(); } });
file.addEventListener("change", () => upload(file.files[0]));
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => { e.preventDefault(); drop.classList.remove("over"); upload(e.dataTransfer.files[0]); });

const initial = new URLSearchParams(location.search).get("q");
if (initial) { $("q").value = initial; $("form").requestSubmit(); }
</script>
</body>
</html>
)HTML";

}  // namespace blip::cli
