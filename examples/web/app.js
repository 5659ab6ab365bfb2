// The page: each button awaits one promise of the wasm module at a time; training
// awaits every step's loss, so the browser draws and answers input between steps.
import init, { App } from "./pkg/boha_web.js";

const $ = (id) => document.getElementById(id);
const status = (s) => { $("status").textContent = s; };
let app = null;
let losses = [];
let stopping = false;

function drawCurve() {
  const c = $("curve"), g = c.getContext("2d");
  g.clearRect(0, 0, c.width, c.height);
  g.strokeStyle = "#ccc";
  g.strokeRect(40, 10, c.width - 50, c.height - 40);
  if (losses.length === 0) return;
  const max = Math.max(...losses), min = Math.min(...losses);
  const x = (i) => 40 + (c.width - 50) * (losses.length === 1 ? 0 : i / (losses.length - 1));
  const y = (v) => 10 + (c.height - 40) * (1 - (v - min) / (max - min || 1));
  g.fillStyle = "#555";
  g.fillText(max.toFixed(3), 2, 14);
  g.fillText(min.toFixed(3), 2, c.height - 30);
  g.fillText(`step ${losses.length}`, c.width - 60, c.height - 12);
  g.strokeStyle = "#1565c0";
  g.lineWidth = 2;
  g.beginPath();
  losses.forEach((v, i) => (i ? g.lineTo(x(i), y(v)) : g.moveTo(x(i), y(v))));
  g.stroke();
}

function save(name, data, type) {
  const a = document.createElement("a");
  a.href = URL.createObjectURL(new Blob([data], { type }));
  a.download = name;
  a.click();
  setTimeout(() => URL.revokeObjectURL(a.href), 1000);
}

$("load").onclick = async () => {
  const file = $("model").files[0];
  if (!file) return status("choose a GGUF file first");
  status(`reading ${file.name} …`);
  try {
    const bytes = new Uint8Array(await file.arrayBuffer());
    app = new App();
    status(await app.load(file.name, bytes));
    $("train").disabled = false;
  } catch (e) {
    status(`load failed: ${e}`);
  }
};

$("tiny").onclick = async () => {
  try {
    app = new App();
    status(await app.load_tiny());
    $("train").disabled = false;
  } catch (e) {
    status(`load failed: ${e}`);
  }
};

$("train").onclick = async () => {
  const file = $("data").files[0];
  const jsonl = file ? await file.text() : "";
  const steps = +$("steps").value;
  try {
    const n = app.start(jsonl, +$("blocks").value, +$("rank").value, +$("seq").value);
    status(`training on ${n} examples`);
  } catch (e) {
    return status(`start failed: ${e}`);
  }
  losses = [];
  window.bohaLosses = losses;  // for the headless page check
  stopping = false;
  $("train").disabled = true;
  $("stop").disabled = false;
  $("progress").max = steps;
  const t0 = performance.now();
  for (let i = 0; i < steps && !stopping; i++) {
    try {
      losses.push(await app.step(+$("lr").value));
    } catch (e) {
      status(`step failed: ${e}`);
      break;
    }
    $("progress").value = i + 1;
    const per = (performance.now() - t0) / (i + 1) / 1000;
    $("stepinfo").textContent =
      `step ${i + 1}/${steps}, loss ${losses[i].toFixed(4)}, ${per.toFixed(2)} s/step`;
    drawCurve();
  }
  status(`trained ${losses.length} steps`);
  document.title = `boha: trained ${losses.length} steps`;
  $("train").disabled = false;
  $("stop").disabled = true;
  $("ask").disabled = false;
  $("download").disabled = false;
};

$("stop").onclick = () => { stopping = true; };

$("ask").onclick = async () => {
  const p = $("prompt").value;
  $("base").textContent = "…";
  $("adapted").textContent = "…";
  try {
    $("base").textContent = await app.chat(p, false, 24);
    $("adapted").textContent = await app.chat(p, true, 24);
  } catch (e) {
    status(`chat failed: ${e}`);
  }
};

$("download").onclick = async () => {
  try {
    const [config, weights] = await app.adapter_files();
    save("adapter_config.json", config, "application/json");
    save("adapter_model.safetensors", weights, "application/octet-stream");
  } catch (e) {
    status(`download failed: ${e}`);
  }
};

await init();
status(navigator.gpu ? "Choose a GGUF file (SmolLM2-135M-Instruct's works)."
                     : "This browser offers no WebGPU (navigator.gpu is missing).");
