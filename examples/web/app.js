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

// The block-grid heatmap: one cell per block (i, j) of the chosen matrix, shaded by
// ‖B_ij A_ij‖_F relative to the largest block (white: 0, blue: the largest).
async function drawHeat() {
  const c = $("heat"), g = c.getContext("2d");
  let grid, norms;
  try {
    [grid, norms] = await app.block_norms(+$("hlayer").value, $("hproj").value);
  } catch (e) {
    $("heatinfo").textContent = `${e}`;
    return;
  }
  const max = Math.max(...norms) || 1;
  const w = c.width / grid, h = c.height / grid;
  g.clearRect(0, 0, c.width, c.height);
  for (let i = 0; i < grid; i++) {
    for (let j = 0; j < grid; j++) {
      const t = norms[i * grid + j] / max;
      g.fillStyle = `rgb(${Math.round(255 - 234 * t)}, ${Math.round(255 - 154 * t)}, ${Math.round(255 - 63 * t)})`;
      g.fillRect(j * w, i * h, w - 1, h - 1);
      // Up to 8 × 8 the cells are wide enough for their value.
      if (grid <= 8) {
        g.fillStyle = t > 0.5 ? "#fff" : "#222";
        g.textAlign = "center";
        g.textBaseline = "middle";
        g.fillText(norms[i * grid + j].toPrecision(3), (j + 0.5) * w, (i + 0.5) * h);
      }
    }
  }
  window.bohaHeat = Array.from(norms);  // for the headless page check
  $("heatinfo").textContent =
    `||B_ij A_ij||_F, ${grid} × ${grid} blocks, largest ${max.toExponential(2)}`;
}

function save(name, data, type) {
  const a = document.createElement("a");
  a.href = URL.createObjectURL(new Blob([data], { type }));
  a.download = name;
  a.click();
  setTimeout(() => URL.revokeObjectURL(a.href), 1000);
}

// One .gguf file, or a Hugging Face checkpoint's files (config.json, the safetensors,
// tokenizer.json, …) chosen together.
$("load").onclick = async () => {
  const files = [...$("model").files];
  if (files.length === 0) return status("choose a GGUF file or a checkpoint's files first");
  status(`reading ${files.map((f) => f.name).join(", ")} …`);
  try {
    const blobs = await Promise.all(files.map(async (f) => new Uint8Array(await f.arrayBuffer())));
    app = new App();
    if (files.length === 1 && files[0].name.endsWith(".gguf")) {
      status(await app.load(files[0].name, blobs[0]));
    } else {
      status(await app.load_hf(files.map((f) => f.name), blobs));
    }
    $("hlayer").max = app.num_layers() - 1;
    $("train").disabled = false;
  } catch (e) {
    status(`load failed: ${e}`);
  }
};

$("tiny").onclick = async () => {
  try {
    app = new App();
    status(await app.load_tiny());
    $("hlayer").max = app.num_layers() - 1;
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
    await drawHeat();
  }
  status(`trained ${losses.length} steps`);
  document.title = `boha: trained ${losses.length} steps`;
  $("train").disabled = false;
  $("stop").disabled = true;
  $("ask").disabled = false;
  $("download").disabled = false;
};

$("stop").onclick = () => { stopping = true; };
// The adapter's description, for the headless page check's record.
window.app_adapter_info = () => app.adapter_info();
// Between runs only: during one, the next step redraws it with the new choice.
$("hlayer").onchange = $("hproj").onchange = () => {
  if (losses.length && $("stop").disabled) drawHeat();
};

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
status(navigator.gpu ? "Choose a GGUF file (SmolLM2-135M-Instruct's works) or a checkpoint's files."
                     : "This browser offers no WebGPU (navigator.gpu is missing).");
