// The page of `python -m diamond.play`: draws the frames the server pushes over the WebSocket and sends the
// player's keys and controls back. No build step: plain browser JavaScript.
"use strict";

const $ = (id) => document.getElementById(id);
const KEYS = {
  ArrowUp: "up", KeyW: "up", ArrowDown: "down", KeyS: "down", ArrowLeft: "left", KeyA: "left",
  ArrowRight: "right", KeyD: "right", Space: "fire",
};
const LABELS = { up: "↑/W", down: "↓/S", left: "←/A", right: "→/D", fire: "Space" };
const held = new Set();
const arrivals = [];  // arrival times (ms) of the last frames, for the frame rate the page reaches
const errors = [];    // per-step MSE of the current context
let ws = null;
let paused = false;
let policy = false;
let over = false;
let endAt = null;     // the first step where R_ψ predicted the end of the imagined episode (null: none yet)

function send(msg) {
  if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(msg));
}

function setStatus(text, isError = false) {
  $("status").textContent = text;
  $("status").className = isError ? "error" : "";
}

function noFrameRate() {  // paused, over or disconnected: no frames arrive, so no rate is shown
  arrivals.length = 0;
  $("fps").textContent = "–";
}

function showState() {
  if (paused || over) noFrameRate();
  $("pause").textContent = paused ? "Resume (P)" : "Pause (P)";
  $("policy").classList.toggle("on", policy);
  if (over) setStatus("the real game is over: press R for a new context");
  else setStatus(paused ? "paused: press a key to step with it, P to resume" : (policy ? "the policy plays" : "you play"));
}

function onHello(msg) {
  $("game").textContent = msg.game;
  $("source").textContent = msg.source;
  $("fps-cap").textContent = msg.fps_cap > 0 ? msg.fps_cap.toFixed(1) : "none";
  $("num-steps").value = msg.num_steps;
  $("num-steps").max = msg.max_steps;
  const select = $("sampler");
  select.innerHTML = "";
  for (const name of msg.samplers) select.add(new Option(name, name, false, name === msg.sampler));
  select.disabled = msg.samplers.length === 0;
  const list = $("keymap");
  list.innerHTML = "";
  for (const a of msg.actions) {
    const item = document.createElement("li");
    item.textContent = `${a.meaning}: ${a.keys.length ? a.keys.map((k) => LABELS[k]).join(" + ") : "no key"}`;
    list.append(item);
  }
}

function onFrame(msg) {
  $("imagined").src = msg.imagined;
  $("real").src = msg.real;
  $("imagined-step").textContent = msg.t;
  $("real-step").textContent = msg.t;
  $("shown-context").textContent = msg.context;
  if (document.activeElement !== $("context")) $("context").value = msg.context;
  $("reward").textContent = msg.reward;
  $("end").textContent = msg.end ? "yes" : "no";
  $("end").className = msg.end ? "yes" : "";
  endAt = msg.end_at;
  $("end-marker").hidden = endAt === null;
  $("end-at").textContent = endAt === null ? "" : endAt;
  $("real-reward").textContent = msg.real_reward;
  over = msg.real_over;
  $("real-over").textContent = over ? "game over" : "playing";
  $("mse").textContent = msg.mse.toFixed(4);
  $("action").textContent = msg.meaning === null ? "–" : msg.meaning;
  $("by").textContent = msg.by;
  const plural = msg.num_steps === 1 ? "" : "s";
  $("sampling").textContent = `${msg.num_steps} ${msg.sampler ? msg.sampler + " " : ""}denoising step${plural}`;
  if (msg.t === 0) errors.length = 0; else errors.push(msg.mse);
  $("mse-mean").textContent = errors.length ? (errors.reduce((a, b) => a + b, 0) / errors.length).toFixed(4) : "0";
  drawChart();
  if (msg.by !== "context") {
    $("step-ms").textContent = msg.step_ms.toFixed(1);
    const now = performance.now();
    arrivals.push(now);
    while (arrivals.length > 2 && now - arrivals[0] > 3000) arrivals.shift();
    if (arrivals.length > 1) {
      $("fps").textContent = ((arrivals.length - 1) * 1000 / (now - arrivals[0])).toFixed(1);
    }
  }
  showState();
}

function drawChart() {
  const c = $("mse-chart");
  const g = c.getContext("2d");
  g.clearRect(0, 0, c.width, c.height);
  const shown = errors.slice(-200);
  if (!shown.length) return;
  const top = Math.max(...shown, 1e-6);
  g.strokeStyle = "#6cf";
  g.beginPath();
  shown.forEach((e, i) => {
    const x = (i / Math.max(1, shown.length - 1)) * (c.width - 1);
    const y = c.height - 1 - (e / top) * (c.height - 20);
    if (i === 0) g.moveTo(x, y); else g.lineTo(x, y);
  });
  g.stroke();
  const endIndex = endAt === null ? -1 : endAt - 1 - (errors.length - shown.length);  // errors[i] is step i + 1
  if (endIndex >= 0) {
    const x = (endIndex / Math.max(1, shown.length - 1)) * (c.width - 1);
    g.strokeStyle = "#f66";
    g.beginPath();
    g.moveTo(x, 16);
    g.lineTo(x, c.height);
    g.stroke();
    g.fillStyle = "#f66";
    g.fillText("R\u03c8 end", Math.min(x + 3, c.width - 40), 26);
  }
  g.fillStyle = "#aaa";
  g.fillText(`max ${top.toFixed(4)}`, 4, 12);
}

function connect() {
  ws = new WebSocket(`ws://${location.host}/play`);
  ws.onmessage = (event) => {
    const msg = JSON.parse(event.data);
    if (msg.type === "hello") onHello(msg);
    else if (msg.type === "frame") onFrame(msg);
    else if (msg.type === "state") {
      paused = msg.paused; policy = msg.policy; over = msg.over;  // the settings fields keep what was typed
      showState();
    } else if (msg.type === "error") setStatus(msg.message, true);
  };
  ws.onclose = () => {
    noFrameRate();
    setStatus("disconnected: the server stopped (reload to reconnect)", true);
  };
}

function restart() {
  arrivals.length = 0;
  send({ type: "restart", context: Number($("context").value) });
}

function togglePause() { paused = !paused; send({ type: "pause", paused }); showState(); }
function togglePolicy() { policy = !policy; send({ type: "policy", on: policy }); showState(); }
function step(extra = []) { send({ type: "step", keys: [...new Set([...held, ...extra])] }); }

document.addEventListener("keydown", (e) => {
  if (e.target instanceof HTMLInputElement || e.target instanceof HTMLSelectElement) return;
  const key = KEYS[e.code];
  if (key) {
    e.preventDefault();
    if (e.repeat) return;
    held.add(key);
    if (paused) step([key]); else send({ type: "keys", keys: [...held] });
    return;
  }
  if (e.code === "KeyP") togglePause();
  else if (e.code === "KeyN") step();
  else if (e.code === "KeyG") togglePolicy();
  else if (e.code === "KeyR") { $("context").value = Number($("context").value) + 1; restart(); }
});
document.addEventListener("keyup", (e) => {
  const key = KEYS[e.code];
  if (!key) return;
  held.delete(key);
  if (!paused) send({ type: "keys", keys: [...held] });
});
window.addEventListener("blur", () => { held.clear(); send({ type: "keys", keys: [] }); });

$("pause").onclick = togglePause;
$("step").onclick = () => step();
$("policy").onclick = togglePolicy;
$("restart").onclick = () => { $("context").value = Number($("context").value) + 1; restart(); };
$("context").addEventListener("keydown", (e) => { if (e.key === "Enter") restart(); });  // replay this context
const settings = () => send({ type: "settings", num_steps: Number($("num-steps").value), sampler: $("sampler").value || null });
$("num-steps").onchange = settings;
$("sampler").onchange = settings;
connect();
// a clicked button keeps no focus, so Space stays FIRE instead of clicking it again
for (const b of document.querySelectorAll("button")) b.addEventListener("click", () => b.blur());
