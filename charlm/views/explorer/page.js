"use strict";
// The page's data (charlm/views/explore.py): tokens, their surprisal in bits, the top predictions
// (ids and per-mille probabilities, topK per token) and, per layer and state, the activations
// of its units as base64 int8 (unit-major: all tokens of a unit, then the next unit).
const D = JSON.parse(document.getElementById("data").textContent);
const N = D.tokens.length;
const SHOWN = { " ": "\u2423", "\n": "\u21b5", "\t": "\u21e5" };
const NEG = [33, 102, 172], MID = [247, 247, 247], POS = [178, 24, 43]; // RdBu ends and middle
const $ = (id) => document.getElementById(id);
const decoded = new Map(); // state index -> Int8Array (units x N)
let spans = [], pinned = -1;

function mix(a, b, f) { return a.map((v, k) => Math.round(v + (b[k] - v) * f)); }
function rgb(c) { return `rgb(${c[0]}, ${c[1]}, ${c[2]})`; }

// Surprisal from 0 to D.scaleBits (a uniform guess) along the stops; saturated above.
function surprisalColours(bits) {
  const stops = D.surprisalStops;
  const x = Math.min(Math.max(bits / D.scaleBits, 0), 1) * (stops.length - 1);
  const i = Math.min(Math.floor(x), stops.length - 2);
  return [rgb(mix(stops[i], stops[i + 1], x - i)), x < 1.8 ? "#000" : "#fff"];
}

// An activation in [-1, 1]: blue below 0, white at 0, red above.
function activationColours(a) {
  const c = a < 0 ? mix(MID, NEG, -a) : mix(MID, POS, a);
  return [rgb(c), Math.abs(a) > 0.6 ? "#fff" : "#000"];
}

function shown(token) { return SHOWN[token] ?? token; }

function buildText() {
  const box = $("text"), frag = document.createDocumentFragment();
  let afterBreak = true;
  for (let i = 0; i < N; i++) {
    const piece = D.tokens[i], span = document.createElement("span");
    span.className = "tok";
    span.dataset.i = i;
    if (piece === "\n") {
      span.textContent = "\u21b5";
      span.classList.add("eos");
      frag.append(span, "\n");
      afterBreak = true;
    } else {
      if (D.model.level === "word" && !afterBreak) frag.append(" ");
      span.textContent = piece;
      frag.append(span);
      afterBreak = false;
    }
    spans.push(span);
  }
  box.append(frag);
}

function stateIndex() {
  const layer = Number($("layer").value), kind = $("kind").value;
  return D.states.findIndex((s) => s.layer === layer && s.kind === kind);
}

function activations(index) {
  if (!decoded.has(index)) {
    const bytes = atob(D.states[index].int8), values = new Int8Array(bytes.length);
    for (let k = 0; k < bytes.length; k++) values[k] = (bytes.charCodeAt(k) << 24) >> 24;
    decoded.set(index, values);
  }
  return decoded.get(index);
}

// The chosen unit's activations: a function of the token index, in [-1, 1].
function unitActivation() {
  const index = stateIndex(), values = activations(index);
  const row = D.states[index].units.indexOf(Number($("unit").value));
  return (i) => values[row * N + i] / 127;
}

function unitMode() { return $("mode-unit").checked; }

function stateName(entry) {
  return `layer ${entry.layer + 1} ${entry.kind === "cell" ? "cell tanh(c)" : "hidden h"}`;
}

function recolour() {
  const byUnit = unitMode(), activation = byUnit ? unitActivation() : null;
  for (let i = 0; i < N; i++) {
    const [bg, ink] = byUnit ? activationColours(activation(i)) : surprisalColours(D.bits[i]);
    spans[i].style.backgroundColor = bg;
    spans[i].style.color = ink;
  }
  const entry = D.states[stateIndex()];
  const steps = byUnit ? [-1, -0.5, 0, 0.5, 1].map(activationColours)
                       : [0, 0.25, 0.5, 0.75, 1].map((f) => surprisalColours(f * D.scaleBits));
  $("legend-bar").style.background = `linear-gradient(to right, ${steps.map((s) => s[0]).join(", ")})`;
  $("legend-low").textContent = byUnit ? "\u22121" : "0";
  $("legend-high").textContent = byUnit ? "+1" : `${D.scaleBits.toFixed(1)}+ bits`;
  $("legend-name").textContent = byUnit ? `${stateName(entry)}, unit ${$("unit").value}` : "surprisal";
  for (const li of $("ranking").children) li.classList.toggle("current", li.dataset.unit === $("unit").value);
  if (pinned >= 0) showTip(pinned);
  writeFragment();
}

function fillUnits() {
  const entry = D.states[stateIndex()], select = $("unit");
  select.replaceChildren(...entry.units.map((u, r) => new Option(`${u} (\u03c3 ${entry.std[r].toFixed(3)})`, String(u))));
  const list = $("ranking"), top = entry.std[0] || 1;
  list.replaceChildren(...entry.units.slice(0, entry.ranked).map((u, r) => {
    const li = document.createElement("li"), bar = document.createElement("span");
    li.dataset.unit = String(u);
    li.textContent = `unit ${u}  \u03c3 ${entry.std[r].toFixed(3)}`;
    bar.className = "bar";
    bar.style.width = `${Math.round(60 * entry.std[r] / top)}px`;
    li.append(bar);
    li.addEventListener("click", () => { select.value = String(u); $("mode-unit").checked = true; recolour(); });
    return li;
  }));
}

function showTip(i) {
  const tip = $("tip"), k = D.topK, rect = spans[i].getBoundingClientRect();
  const p = Math.pow(2, -D.bits[i]);
  const head = document.createElement("div");
  head.className = "head";
  head.textContent = `\u201c${shown(D.tokens[i])}\u201d p ${(100 * p).toFixed(1)}% \u00b7 rank ${D.rank[i]} \u00b7 ${D.bits[i].toFixed(2)} bits` +
    (D.target[i] === D.unkId ? " \u00b7 unknown token" : "");
  const table = document.createElement("table");
  for (let r = 0; r < k; r++) {
    const id = D.top[i * k + r], row = table.insertRow();
    row.className = "pred" + (id === D.target[i] ? " actual" : "");
    const token = row.insertCell(), prob = row.insertCell();
    token.className = "pt";
    token.textContent = D.vocab[id];
    prob.className = "pp";
    const permille = D.topPermille[i * k + r];
    prob.textContent = permille === 0 ? "<0.1%" : `${(permille / 10).toFixed(1)}%`;
  }
  const parts = [head, document.createTextNode("the model's top predictions here:"), table];
  if (unitMode()) {
    const act = document.createElement("div"), a = unitActivation()(i);
    act.className = "act";
    act.textContent = `${stateName(D.states[stateIndex()])} unit ${$("unit").value}: ${a >= 0 ? "+" : ""}${a.toFixed(2)}`;
    parts.push(act);
  }
  tip.replaceChildren(...parts);
  tip.hidden = false;
  tip.style.top = `${rect.bottom + window.scrollY + 4}px`;
  tip.style.left = `${Math.max(4, Math.min(rect.left + window.scrollX, window.innerWidth - tip.offsetWidth - 8))}px`;
}

function hideTip() { if (pinned < 0) $("tip").hidden = true; }

function pin(i) {
  if (pinned >= 0) spans[pinned].classList.remove("pinned");
  pinned = i;
  if (pinned >= 0) { spans[pinned].classList.add("pinned"); showTip(pinned); } else hideTip();
}

// The view lives in the address's fragment, e.g. #layer=2&state=cell&unit=195&token=120
// (token: the position in the text from 1), so that a bookmark reopens it. Nothing is sent.
function choose(select, value) {
  if ([...select.options].some((o) => o.value === value)) select.value = value;
}

function readFragment() {
  const f = new URLSearchParams(location.hash.slice(1));
  if (f.has("layer")) choose($("layer"), String(Number(f.get("layer")) - 1));
  if (f.has("state")) choose($("kind"), f.get("state"));
  fillUnits();
  if (f.has("unit")) choose($("unit"), f.get("unit"));
  $(f.has("unit") ? "mode-unit" : "mode-surprisal").checked = true;
  recolour();
  const token = Number(f.get("token"));
  pin(Number.isInteger(token) && token >= 1 && token <= N ? token - 1 : -1);
  writeFragment();
}

function writeFragment() {
  const f = new URLSearchParams();
  if (unitMode()) {
    f.set("layer", String(Number($("layer").value) + 1));
    f.set("state", $("kind").value);
    f.set("unit", $("unit").value);
  }
  if (pinned >= 0) f.set("token", String(pinned + 1));
  try { history.replaceState(null, "", "#" + f.toString()); } catch (e) { /* a sandboxed frame: no fragment */ }
}

function setup() {
  const m = D.model;
  const perChar = m.level === "char" ? "bits per character" : "bits per token";
  $("summary").textContent = `${m.cell.toUpperCase()}, ${m.layers} \u00d7 ${m.hidden} units, ${m.level} level, ` +
    `vocabulary ${m.vocabulary}. ${N} tokens: ${(D.totalBits / Math.max(N, 1)).toFixed(3)} ${perChar}. ` +
    "Hover or tap a token for the model's predictions there.";
  const layers = [...new Set(D.states.map((s) => s.layer))], kinds = [...new Set(D.states.map((s) => s.kind))];
  $("layer").replaceChildren(...layers.map((l) => new Option(String(l + 1), String(l))));
  $("kind").replaceChildren(...kinds.map((k) => new Option(k === "cell" ? "cell tanh(c)" : "hidden h", k)));
  $("kind-label").hidden = kinds.length < 2;
  buildText();
  fillUnits();
  for (const id of ["layer", "kind"]) $(id).addEventListener("change", () => { fillUnits(); recolour(); });
  $("unit").addEventListener("change", () => { $("mode-unit").checked = true; recolour(); });
  for (const id of ["mode-surprisal", "mode-unit"]) $(id).addEventListener("change", recolour);
  const box = $("text");
  box.addEventListener("mouseover", (e) => { if (e.target.dataset.i && pinned < 0) showTip(Number(e.target.dataset.i)); });
  box.addEventListener("mouseleave", hideTip);
  box.addEventListener("click", (e) => { // a tap pins the predictions; another tap unpins
    const i = e.target.dataset.i ? Number(e.target.dataset.i) : -1;
    pin(i === pinned ? -1 : i);
    writeFragment();
  });
  readFragment();
  window.addEventListener("hashchange", readFragment);
}

setup();
