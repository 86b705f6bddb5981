// mnistbench serve: draw (or open) a digit, send it to POST /api/predict, show every model's answer.
"use strict";

const COLOURS = ["#2f6fde", "#d9480f", "#2b8a3e", "#9c36b5", "#c92a2a", "#1098ad", "#e67700", "#5c7cfa"];
const $ = (id) => document.getElementById(id);
const pad = $("draw"), pen = pad.getContext("2d");
const overlay = $("boxes").getContext("2d");
const seen = $("seen").getContext("2d");
const status = $("status");

let models = [];          // GET /api/models
let strokes = [];         // each a list of [x, y] in pad pixels
let picture = null;       // an opened image: {bitmap, file, place: {s, dx, dy}}
let current = null;       // the stroke being drawn
let asked = 0;            // a newer request's answer wins over an older one's
let replies = 0;          // replies shown (body[data-replies]: a test waits for the next one)

// --- status line --------------------------------------------------------------------------------
function say(text, isError = false) {
  status.textContent = text;
  status.classList.toggle("error", isError);
}

// --- the pad: strokes white on black, about a tenth of the pad wide, like MNIST's pen ----------
function setPen() {
  pen.strokeStyle = "#fff";
  pen.fillStyle = "#fff";
  pen.lineWidth = pad.width / 10;
  pen.lineCap = "round";
  pen.lineJoin = "round";
}

function redraw() {
  pen.fillStyle = "#000";
  pen.fillRect(0, 0, pad.width, pad.height);
  if (picture) {
    const { bitmap, place } = picture;
    pen.drawImage(bitmap, place.dx, place.dy, bitmap.width * place.s, bitmap.height * place.s);
  }
  setPen();
  for (const s of strokes) drawStroke(s);
}

function drawStroke(points) {
  pen.beginPath();
  pen.moveTo(points[0][0], points[0][1]);
  for (const [x, y] of points.slice(1)) pen.lineTo(x, y);
  if (points.length === 1) pen.lineTo(points[0][0] + 0.01, points[0][1]);  // a dot
  pen.stroke();
}

function at(event) {
  const r = pad.getBoundingClientRect();
  return [(event.clientX - r.left) * pad.width / r.width, (event.clientY - r.top) * pad.height / r.height];
}

pad.addEventListener("pointerdown", (event) => {
  if (event.button !== 0) return;
  event.preventDefault();
  try { pad.setPointerCapture(event.pointerId); } catch (e) { /* a pointer the browser no longer tracks */ }
  if (picture) { picture = null; redraw(); }  // drawing starts a new digit over an opened image
  current = [at(event)];
  strokes.push(current);
  setPen();
  drawStroke(current);
});

pad.addEventListener("pointermove", (event) => {
  if (!current) return;
  const moves = event.getCoalescedEvents ? event.getCoalescedEvents() : [event];
  for (const e of moves.length ? moves : [event]) {
    const last = current[current.length - 1], next = at(e);
    current.push(next);
    pen.beginPath();
    pen.moveTo(last[0], last[1]);
    pen.lineTo(next[0], next[1]);
    pen.stroke();
  }
});

function endStroke() {
  if (!current) return;
  current = null;
  ask();
}
pad.addEventListener("pointerup", endStroke);
pad.addEventListener("pointercancel", endStroke);

function clearAll() {
  strokes = [];
  picture = null;
  redraw();
  clearAnswers();
  say("Draw a digit.");
}

$("clear").addEventListener("click", clearAll);
$("undo").addEventListener("click", undo);
document.addEventListener("keydown", (e) => {
  if ((e.ctrlKey || e.metaKey) && e.key === "z") { e.preventDefault(); undo(); }
});

function undo() {
  if (picture && !strokes.length) return clearAll();
  strokes.pop();
  redraw();
  if (strokes.length) ask(); else clearAll();
}

// --- an opened or dropped image: shown on the pad, its own bytes sent --------------------------
async function openImage(file) {
  if (!file) return;
  let bitmap = null;
  try { bitmap = await createImageBitmap(file); } catch (e) { /* the server names what is wrong */ }
  strokes = [];
  if (bitmap) {
    const s = Math.min(pad.width / bitmap.width, pad.height / bitmap.height);
    picture = { bitmap, place: { s, dx: (pad.width - bitmap.width * s) / 2, dy: (pad.height - bitmap.height * s) / 2 } };
  } else {
    picture = null;
  }
  redraw();
  send(file, file.type || "application/octet-stream", file.name);
}

$("file").addEventListener("change", (e) => { openImage(e.target.files[0]); e.target.value = ""; });
const zone = $("pad");
zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("dragging"); });
zone.addEventListener("dragleave", () => zone.classList.remove("dragging"));
zone.addEventListener("drop", (e) => {
  e.preventDefault();
  zone.classList.remove("dragging");
  openImage(e.dataTransfer.files[0]);
});

// --- asking the server --------------------------------------------------------------------------
function ask() {
  if (!strokes.length) return;
  pad.toBlob((blob) => send(blob, "image/png", "your drawing"), "image/png");
}

async function send(body, type, what) {
  const mine = ++asked;
  say(`Asking ${models.length === 1 ? "the model" : `${models.length} models`} about ${what}…`);
  let answer;
  try {
    const r = await fetch("api/predict", { method: "POST", headers: { "Content-Type": type }, body });
    answer = await r.json();
    if (!r.ok) throw new Error(answer.error || `HTTP ${r.status}`);
  } catch (e) {
    if (mine === asked) { clearAnswers(); say(`${what}: ${e.message}`, true); replied(); }
    return;
  }
  if (mine !== asked) return;
  show(answer);
  const ms = answer.predictions.map((p) => p.ms);
  say(`Answered in ${Math.max(...ms).toFixed(1)} ms at most per model (preprocessing ${answer.preprocess_ms.toFixed(1)} ms).`);
  replied();
}

function replied() { document.body.dataset.replies = String(++replies); }

// --- the answers ----------------------------------------------------------------------------------
function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

function percent(p) { return `${(100 * p).toFixed(1)} %`; }

function card(m, i) {
  const c = el("article", "model");
  c.dataset.run = m.run;
  c.dataset.model = m.model;
  c.style.setProperty("--colour", COLOURS[i % COLOURS.length]);
  c.append(el("h2", "", m.model));
  const acc = m.test_accuracy == null ? "" : ` · test ${percent(m.test_accuracy)}`;
  c.append(el("p", "about", `${m.run} · ${m.dataset}${acc}`));
  const answer = el("div", "answer");
  answer.append(el("span", "label", "–"), el("span", "ms", ""));
  c.append(answer);
  if (m.kind === "detect") c.append(el("p", "reads", ""));
  c.append(el("ol", "bars"));
  return c;
}

function bars(list, rows) {
  list.replaceChildren(...rows.map(([name, p]) => {
    const li = el("li");
    li.dataset.class = name;
    li.dataset.p = p.toFixed(6);
    const bar = el("span", "bar"), fill = el("span", "fill");
    fill.style.width = `${Math.max(0, Math.min(1, p)) * 100}%`;
    bar.append(fill);
    li.append(el("span", "name", name), bar, el("span", "p", percent(p)));
    return li;
  }));
}

function clearAnswers() {
  overlay.clearRect(0, 0, pad.width, pad.height);
  seen.clearRect(0, 0, 28, 28);
  document.querySelectorAll(".model").forEach((c) => {
    c.querySelector(".label").textContent = "–";
    c.querySelector(".ms").textContent = "";
    c.querySelector(".bars").replaceChildren();
    const reads = c.querySelector(".reads");
    if (reads) reads.textContent = "";
  });
}

function show(answer) {
  paint(answer.input);
  overlay.clearRect(0, 0, pad.width, pad.height);
  answer.predictions.forEach((p, i) => {
    const c = document.querySelector(`.model[data-run="${CSS.escape(p.run)}"]`);
    if (!c) return;
    c.querySelector(".label").textContent = p.label ?? "none";
    c.querySelector(".ms").textContent = `${p.ms.toFixed(1)} ms`;
    const m = models.find((x) => x.run === p.run);
    if (p.kind === "detect") {
      c.querySelector(".reads").textContent = p.digits.length ? `reads “${p.text}”, left to right` : "finds no digit";
      bars(c.querySelector(".bars"), p.digits.slice().sort((a, b) => b.score - a.score).slice(0, 3)
        .map((d) => [`${d.digit}`, d.score]));
      drawBoxes(p.digits, COLOURS[models.indexOf(m) % COLOURS.length]);
    } else {
      const top = p.probabilities.map((q, k) => [m.classes[k], q]).sort((a, b) => b[1] - a[1]).slice(0, 3);
      bars(c.querySelector(".bars"), top);
    }
  });
}

function paint(rows) {
  const img = seen.createImageData(28, 28);
  rows.forEach((row, y) => row.forEach((v, x) => {
    const k = 4 * (28 * y + x), g = Math.round(255 * v);
    img.data[k] = img.data[k + 1] = img.data[k + 2] = g;
    img.data[k + 3] = 255;
  }));
  seen.putImageData(img, 0, 0);
}

function drawBoxes(digits, colour) {
  // boxes come in the sent image's pixels: the pad's own, or the opened image's, placed on the pad
  const { s, dx, dy } = picture ? picture.place : { s: 1, dx: 0, dy: 0 };
  overlay.strokeStyle = overlay.fillStyle = colour;
  overlay.lineWidth = 2;
  overlay.font = "bold 16px system-ui, sans-serif";
  for (const d of digits) {
    const [x1, y1, x2, y2] = d.box.map((v, k) => v * s + (k % 2 ? dy : dx));
    overlay.strokeRect(x1, y1, x2 - x1, y2 - y1);
    overlay.fillText(`${d.digit}`, x1 + 2, Math.max(14, y1 - 3));
  }
}

// --- start ---------------------------------------------------------------------------------------
async function start() {
  redraw();
  try {
    const r = await fetch("api/models");
    models = (await r.json()).models;
  } catch (e) {
    say(`cannot reach the server: ${e.message}`, true);
    return;
  }
  $("answers").replaceChildren(...models.map(card));
  say(`${models.length} model${models.length === 1 ? "" : "s"} ready: draw a digit.`);
  document.body.dataset.ready = "true";
}

start();
