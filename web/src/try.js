/**
 * The site's Try it page (web/try.md): the released model's .tflite files, or the reader's own
 * with its JSON sidecar, run in the browser by LiteRT.js (@litertjs/core, vendored into the site
 * by tools/build_site.py from web/node_modules; its wasm files too: nothing comes from another
 * host). The preprocessing is web/src/preprocess.js, the sidecar's contract, shared with the
 * unit tests; tests/repo/test_site.py checks the page's answers against Python's LiteRT.
 *
 * window.tryIt, for the tests and the curious: ready (a promise, the default model loaded),
 * runs (images classified so far), last (the last result: probabilities, top 5, input tensor,
 * timings), runtimeLog (what LiteRT's runtime printed).
 */
import {loadAndCompile, loadLiteRt, Tensor} from "./vendor/litert-core.js";
import {SidecarError, prepare, probabilities, readContract, topK} from "./preprocess.js";

const $ = (id) => document.getElementById(id);
const root = $("try-app");
const MAX_PIXELS = 16_000_000; // larger photos are shrunk by the browser first (phones' canvas limit)

class UserError extends Error {}

const page = {ready: null, runs: 0, last: null, runtimeLog: [], models: new Map(), current: null, image: null};
window.tryIt = page;

// LiteRT's runtime prints INFO and WARNING lines to stderr, which Emscripten sends to
// console.error by default: kept in page.runtimeLog instead, and only errors reported as such.
function runtimeLine(line) {
  page.runtimeLog.push(line);
  if (/^(ERROR|FATAL|E\d{4})/.test(line)) console.error(`LiteRT: ${line}`);
  else console.debug(`LiteRT: ${line}`);
}

function status(text, kind = "info") {
  const element = $("try-status");
  element.textContent = text;
  element.dataset.kind = kind;
  element.setAttribute("role", kind === "error" ? "alert" : "status");
}

function fail(error) {
  root.dataset.state = "error";
  if (error instanceof UserError || error instanceof SidecarError) {
    status(error.message, "error");
  } else {
    console.error(error);
    status(`Something went wrong: ${error.message ?? error}`, "error");
  }
}

// One thing at a time: loading a model and classifying never overlap.
let queue = Promise.resolve();
function serial(task) {
  const run = queue.then(task);
  queue = run.catch(() => {});
  return run;
}

const kb = (bytes) => `${Math.round(bytes / 1024).toLocaleString("en")} KB`;

// ---------------------------------------------------------------------------------------------
// Models

let runtime = null; // LiteRT.js's wasm runtime, loading (a promise)

function loadRuntime() {
  self.Module = {print: runtimeLine, printErr: runtimeLine}; // read by the wasm loader
  return loadLiteRt(new URL("vendor/wasm/", import.meta.url).href);
}

async function compile(bytes, sidecar, label) {
  await runtime;
  let model;
  try {
    model = await loadAndCompile(bytes, {accelerator: "wasm"});
  } catch (error) {
    throw new UserError(`LiteRT.js could not load ${label}: ${error.message ?? error}`);
  }
  let contract;
  try {
    contract = readContract(sidecar, {inputs: model.getInputDetails(), outputs: model.getOutputDetails()});
  } catch (error) {
    model.delete();
    throw error;
  }
  // The first run sets up XNNPack's kernels: done now, so that the first image's time is its own.
  const Type = {float32: Float32Array, int8: Int8Array, uint8: Uint8Array}[contract.inputDtype];
  const warmUp = new Tensor(new Type(contract.height * contract.width * 3), [1, contract.height, contract.width, 3]);
  const outputs = await model.run(warmUp);
  warmUp.delete();
  outputs.forEach((t) => t.delete());
  return {model, contract, label, bytes: bytes.length};
}

async function fetchBytes(url) {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
  return new Uint8Array(await response.arrayBuffer());
}

async function fetchJson(url) {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
  return response.json();
}

async function loadReleased(entry) {
  if (!page.models.has(entry.id)) {
    status(`Loading the ${entry.label} model (${kb(entry.bytes)})…`);
    const start = performance.now();
    const [bytes, sidecar] = await Promise.all([
      fetchBytes(new URL(entry.tflite, import.meta.url)),
      fetchJson(new URL(entry.sidecar, import.meta.url)),
    ]);
    page.models.set(entry.id, {...(await compile(bytes, sidecar, entry.label)), loadMs: performance.now() - start});
  }
  return page.models.get(entry.id);
}

function addModelChoice(id, text, checked = false) {
  const existing = document.querySelector(`input[name="try-model"][value="${id}"]`);
  if (existing) {
    existing.closest("label").querySelector("span").textContent = text;
    if (checked) existing.checked = true;
    return;
  }
  const label = document.createElement("label");
  const input = Object.assign(document.createElement("input"), {type: "radio", name: "try-model", value: id, checked});
  const span = document.createElement("span");
  span.textContent = text;
  label.append(input, span);
  $("try-models").append(label);
  input.addEventListener("change", () => input.checked && choose(id));
}

function choose(id) {
  return serial(async () => {
    page.current = id;
    const entry = page.index.models.find((m) => m.id === id);
    const loaded = entry ? await loadReleased(entry) : page.models.get(id);
    showCard(loaded);
    if (page.image) await classify();
    else ready(loaded);
  }).catch(fail);
}

function ready(loaded) {
  root.dataset.state = "ready";
  const time = loaded.loadMs ? ` in ${(loaded.loadMs / 1000).toFixed(1)} s` : "";
  status(`Ready: ${loaded.label} (${kb(loaded.bytes)}) loaded${time}. Choose, drop or paste an image.`);
}

function showCard({contract, label}) {
  const card = contract.modelCard;
  const parts = [`${label}: ${contract.classNames.length} classes, input ${contract.height}x${contract.width}, ` +
    `${contract.inputDtype} in, ${contract.resize === "stretch" ? "stretched" : contract.resize === "crop" ? "centre-cropped" : "padded"} to fit.`];
  if (card?.accuracy != null) {
    const interval = card.accuracy_95_interval ? ` (95 % interval ${card.accuracy_95_interval.map((v) => (100 * v).toFixed(1)).join("–")} %)` : "";
    parts.push(`Accuracy ${(100 * card.accuracy).toFixed(2)} %${interval} on ${card.evaluated_on ?? "held-out images"}.`);
  }
  if (card?.limitations) parts.push(`Limitations: ${card.limitations}.`);
  $("try-card").textContent = parts.join(" ");
}

// The reader's own model: a .tflite file and its sidecar.
async function loadOwn() {
  const modelFile = $("try-own-model").files[0];
  const sidecarFile = $("try-own-sidecar").files[0];
  if (!modelFile || !sidecarFile) {
    status(`Now choose the ${modelFile ? "sidecar (.json)" : "model (.tflite)"} too.`);
    return;
  }
  return serial(async () => {
    status(`Loading ${modelFile.name}…`);
    let sidecar;
    try {
      sidecar = JSON.parse(await sidecarFile.text());
    } catch (error) {
      throw new UserError(`${sidecarFile.name} is not valid JSON (${error.message}).`);
    }
    const start = performance.now();
    const bytes = new Uint8Array(await modelFile.arrayBuffer());
    const loaded = await compile(bytes, sidecar, `your model ${modelFile.name}`);
    page.models.get("own")?.model.delete();
    page.models.set("own", {...loaded, loadMs: performance.now() - start});
    addModelChoice("own", `Your model: ${modelFile.name} (${loaded.contract.classNames.length} classes)`, true);
  })
    .then(() => choose("own"))
    .catch(fail);
}

// ---------------------------------------------------------------------------------------------
// Images

async function decode(file) {
  const options = {imageOrientation: "from-image", premultiplyAlpha: "none", colorSpaceConversion: "none"};
  let bitmap;
  try {
    bitmap = await createImageBitmap(file, options);
  } catch {
    throw new UserError(`${file.name || "This file"} is not an image this browser can read (JPEG, PNG, WebP, GIF…).`);
  }
  let shrunk = false;
  if (bitmap.width * bitmap.height > MAX_PIXELS) {
    const factor = Math.sqrt(MAX_PIXELS / (bitmap.width * bitmap.height));
    const size = {resizeWidth: Math.floor(bitmap.width * factor), resizeHeight: Math.floor(bitmap.height * factor)};
    bitmap.close();
    bitmap = await createImageBitmap(file, {...options, ...size, resizeQuality: "high"});
    shrunk = true;
  }
  const canvas = document.createElement("canvas");
  canvas.width = bitmap.width;
  canvas.height = bitmap.height;
  const context = canvas.getContext("2d", {willReadFrequently: true});
  context.drawImage(bitmap, 0, 0);
  const {data} = context.getImageData(0, 0, bitmap.width, bitmap.height);
  return {bitmap, rgba: data, width: bitmap.width, height: bitmap.height, name: file.name || "pasted image", shrunk};
}

function useFile(file) {
  if (!file) return;
  serial(async () => {
    root.dataset.state = "busy";
    status(`Reading ${file.name || "the image"}…`);
    page.image?.bitmap.close();
    page.image = await decode(file);
    if (page.models.has(page.current)) await classify();
    else status(`${page.image.name} is read; waiting for the model to load…`);
  }).catch(fail);
}

function drawPreview(image, fitted, contract) {
  // Drawn at up to 480 pixels, shown 240 CSS pixels on its longer side (small images enlarged).
  const preview = $("try-preview");
  const longer = Math.max(image.width, image.height);
  const scale = Math.min(1, 480 / longer);
  preview.width = Math.max(1, Math.round(image.width * scale));
  preview.height = Math.max(1, Math.round(image.height * scale));
  preview.style.width = `${Math.round((240 * image.width) / longer)}px`;
  preview.classList.toggle("try-enlarged", longer < 240);
  preview.getContext("2d").drawImage(image.bitmap, 0, 0, preview.width, preview.height);
  $("try-image-name").textContent = `${image.name}, ${image.width}x${image.height}`;
  const seen = $("try-seen");
  seen.width = contract.width;
  seen.height = contract.height;
  const pixels = new ImageData(contract.width, contract.height);
  for (let i = 0; i < contract.width * contract.height; i++) {
    pixels.data.set(fitted.subarray(i * 3, i * 3 + 3), i * 4);
    pixels.data[i * 4 + 3] = 255;
  }
  seen.getContext("2d").putImageData(pixels, 0, 0);
  $("try-seen-size").textContent = `${contract.height}x${contract.width}`;
}

function showResults(top) {
  const list = $("try-results");
  list.replaceChildren(
    ...top.map(({name, probability}) => {
      const item = document.createElement("li");
      const label = Object.assign(document.createElement("span"), {className: "try-class", textContent: name});
      const bar = Object.assign(document.createElement("span"), {className: "try-bar"});
      bar.style.setProperty("--p", probability.toFixed(4));
      const value = Object.assign(document.createElement("span"), {
        className: "try-probability",
        textContent: `${(100 * probability).toFixed(1)} %`,
      });
      item.append(label, bar, value);
      return item;
    }),
  );
}

async function classify() {
  const loaded = page.models.get(page.current);
  const image = page.image;
  if (!loaded || !image) return;
  root.dataset.state = "busy";
  const {model, contract, label} = loaded;
  const t0 = performance.now();
  const {fitted, input} = prepare(image.rgba, image.width, image.height, contract);
  const t1 = performance.now();
  const tensor = new Tensor(input, [1, contract.height, contract.width, 3]);
  const outputs = await model.run(tensor);
  const raw = outputs[0].toTypedArray();
  const t2 = performance.now();
  tensor.delete();
  outputs.forEach((t) => t.delete());
  const probs = probabilities(raw, contract);
  const top = topK(probs, contract.classNames, 5);
  drawPreview(image, fitted, contract);
  showResults(top);
  $("try-output").hidden = false;
  $("try-results").scrollIntoView({block: "nearest"});
  $("try-timing").textContent =
    `${(t2 - t1).toFixed(1)} ms for this image (${label}; LiteRT.js on the CPU, WebAssembly), ` +
    `${(t1 - t0).toFixed(1)} ms to prepare it.` +
    (image.shrunk ? " The photo was shrunk by the browser before the model's resize: very large photos may score slightly differently than in Python." : "");
  page.runs += 1;
  page.last = {
    model: page.current,
    image: image.name,
    size: [image.width, image.height],
    probabilities: Array.from(probs),
    top: top.map(({name, probability}) => [name, probability]),
    input: Array.from(input),
    inferenceMs: t2 - t1,
    prepareMs: t1 - t0,
  };
  root.dataset.runs = String(page.runs);
  root.dataset.state = "done";
  status(`${image.name}: ${top[0].name}, ${(100 * top[0].probability).toFixed(1)} %.`);
}

// ---------------------------------------------------------------------------------------------
// Wiring

function wire() {
  for (const id of ["try-file", "try-camera"]) {
    $(id).addEventListener("change", (event) => useFile(event.target.files[0]));
  }
  if (window.matchMedia("(pointer: coarse)").matches) $("try-camera-label").hidden = false;
  const drop = $("try-drop");
  drop.addEventListener("dragover", (event) => {
    event.preventDefault();
    drop.classList.add("try-dragging");
  });
  drop.addEventListener("dragleave", () => drop.classList.remove("try-dragging"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("try-dragging");
    useFile([...event.dataTransfer.files].find((f) => f.type.startsWith("image/")) ?? event.dataTransfer.files[0]);
  });
  document.addEventListener("paste", (event) => {
    const file = [...(event.clipboardData?.files ?? [])].find((f) => f.type.startsWith("image/"));
    if (file) useFile(file);
  });
  $("try-own-model").addEventListener("change", loadOwn);
  $("try-own-sidecar").addEventListener("change", loadOwn);
}

async function start() {
  wire();
  runtime = loadRuntime();
  const index = await fetchJson(new URL("models/index.json", import.meta.url));
  page.index = index;
  $("try-litert-version").textContent = index.litert;
  for (const entry of index.models) {
    addModelChoice(entry.id, `${entry.label}, ${kb(entry.bytes)}`, entry.id === index.default);
  }
  status("Loading LiteRT.js…");
  await runtime;
  await choose(index.default);
}

page.ready = start();
page.ready.catch(fail);
