// cnnvis page: plain JavaScript, no build step, no network beyond this server.
//
// The server sends each map as 8-bit display values (a grayscale PNG); the page colours them
// with the chosen colormap and lays them over the picture the model saw, so the colormap and
// the opacity change at once, without asking the server again.
"use strict";

const $ = (id) => document.getElementById(id);

const state = {
  image: null,          // {file: File} or {sample: "cat"}
  model: "",
  target: null,         // class index to explain; null: the top-1 class
  predictions: [],
  methods: [],
  layers: null,
  colormaps: {},
  cmap: "jet",
  opacity: 0.5,
  maxUpload: 20e6,
  input: null,          // HTMLImageElement of the picture the model saw
  explain: null,        // last explain answer, with decoded value images
  sweep: null,          // last sweep answer, with decoded value images
  busy: 0,
  cancel: null,
};

// ------------------------------------------------------------------ server

async function getJSON(path) {
  return answer(await send(path, { method: "GET" }));
}

async function postForm(path, fields, progressId = null, signal = undefined) {
  const form = new FormData();
  if (progressId) form.append("progress_id", progressId);
  if (state.image && state.image.file) form.append("image", state.image.file, state.image.file.name);
  if (state.image && state.image.sample) form.append("sample", state.image.sample);
  if (state.model) form.append("model", state.model);
  for (const [key, value] of Object.entries(fields)) {
    if (value !== null && value !== undefined && value !== "") form.append(key, String(value));
  }
  return answer(await send(path, { method: "POST", body: form, signal }));
}

async function send(path, options) {
  try {
    return await fetch(path, options);
  } catch (error) {
    if (error.name === "AbortError") throw error;  // the user cancelled: the server stops
    throw new Error("The cnnvis server did not answer. Is it still running? (" + error.message + ")");
  }
}

async function answer(response) {
  let body = null;
  try { body = await response.json(); } catch (error) { body = null; }
  if (!response.ok) {
    const detail = body && body.detail ? body.detail : response.status + " " + response.statusText;
    if (response.status === 413) throw new Error("The image is too large. " + detail);
    throw new Error(capitalize(detail));
  }
  return body;
}

function capitalize(text) {
  text = String(text);
  return text.charAt(0).toUpperCase() + text.slice(1);
}

// ------------------------------------------------------------------ busy and errors

// `tracked`: the work is a request whose progress the server reports (polled while it runs)
// and which the Cancel button stops (the aborted request ends the server's work).
async function busy(message, work, tracked = false) {
  state.busy += 1;
  $("busy-text").textContent = message;
  $("busy").hidden = false;
  document.body.setAttribute("aria-busy", "true");
  updateButtons();
  const id = tracked ? progressId() : null;
  const controller = tracked ? new AbortController() : null;
  state.cancel = controller;
  $("cancel").hidden = !tracked;
  const timer = tracked ? setInterval(() => showProgress(id, message), 500) : null;
  try {
    return await work(id, controller ? controller.signal : undefined);
  } catch (error) {
    if (error.name === "AbortError") showError("Cancelled: the server stopped that work.");
    else showError(error.message || String(error));
    return null;
  } finally {
    if (timer) clearInterval(timer);
    state.cancel = null;
    $("cancel").hidden = true;
    state.busy -= 1;
    if (state.busy === 0) {
      $("busy").hidden = true;
      document.body.removeAttribute("aria-busy");
    }
    updateButtons();
  }
}

function progressId() {
  const bytes = new Uint8Array(12);
  crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

async function showProgress(id, message) {
  let p = null;
  try { p = await getJSON("/api/progress/" + id); } catch (error) { return; }
  if (!p || $("busy").hidden) return;
  if (p.state === "queued") {
    $("busy-text").textContent = message + " (waiting for the model)";
  } else if (p.state === "running" && p.total > 0) {
    const percentDone = Math.floor((100 * p.done) / p.total);
    $("busy-text").textContent = message + " " + p.stage + ": " + p.done + " of " + p.total +
      " (" + percentDone + "%)";
  }
}

function showError(message) {
  $("error-text").textContent = message;
  $("error").hidden = false;
  $("error").scrollIntoView({ block: "nearest" });
}

function clearError() {
  $("error").hidden = true;
  $("error-text").textContent = "";
}

function updateButtons() {
  const ready = state.image !== null && state.busy === 0;
  $("explain").disabled = !ready || selectedMethods().length === 0;
  $("sweep").disabled = !ready;
}

// ------------------------------------------------------------------ start

async function start() {
  bindControls();
  await busy("Starting…", async () => {
    const [models, methods, samples, colormaps, limits] = await Promise.all([
      getJSON("/api/models"), getJSON("/api/methods"), getJSON("/api/samples"),
      getJSON("/api/colormaps"), getJSON("/api/limits"),
    ]);
    state.maxUpload = limits.max_upload_bytes;
    $("limit-mb").textContent = String(Math.round(limits.max_upload_bytes / 1e6));
    fillModels(models);
    fillMethods(methods);
    fillSamples(samples);
    fillColormaps(colormaps);
  });
  await loadLayers();
  updateButtons();
}

function option(value, text, selected) {
  const item = document.createElement("option");
  item.value = value;
  item.textContent = text;
  if (selected) item.selected = true;
  return item;
}

function fillModels(data) {
  const select = $("model");
  select.replaceChildren();
  for (const m of data.models) {
    let text = m.name === "default" ? "default (EfficientNet-Lite0, ImageNet)" : m.name;
    if (m.served && m.weights === null) text += " · random weights";
    select.append(option(m.name, text, m.name === data.default));
  }
  state.model = data.default;
  $("model-note").textContent = data.models.length > 1
    ? "the first use of a model loads it (a few seconds)" : "";
}

function fillMethods(methods) {
  state.methods = methods;
  const wanted = new Set(["grad-cam", "guided-backprop"]);
  for (const m of methods) {
    const chip = document.createElement("label");
    chip.className = "chip";
    chip.title = m.summary + "\n" + m.formula + "\ncost: " + m.passes + "\n" + m.paper;
    const box = document.createElement("input");
    box.type = "checkbox";
    box.value = m.name;
    box.checked = wanted.has(m.name);
    box.addEventListener("change", onMethodsChanged);
    chip.append(box, document.createTextNode(m.name));
    if (m.many_passes) {
      const slow = document.createElement("span");
      slow.className = "slow";
      slow.textContent = "slow";
      slow.title = "many forward passes: takes a while on a CPU";
      chip.append(slow);
    }
    $(m.kind === "cam" || m.needs_layer ? "methods-cam" : "methods-pixel").append(chip);
  }
  const sweep = $("sweep-method");
  for (const m of methods.filter((m) => m.needs_layer && !m.many_passes)) {
    sweep.append(option(m.name, m.name, m.name === "grad-cam"));
  }
  onMethodsChanged();
}

function modelLabel(name) {
  return name === "default" ? "the default model" : name;
}

function fillSamples(data) {
  for (const name of data.samples) $("sample").append(option(name, name, false));
}

function drawLegend() {
  const legend = $("legend");
  const ctx = legend.getContext("2d");
  const lut = state.colormaps[state.cmap];
  if (!lut) return;
  const pixels = ctx.createImageData(legend.width, legend.height);
  for (let x = 0; x < legend.width; x += 1) {
    const v = Math.round((255 * x) / (legend.width - 1)) * 3;
    for (let y = 0; y < legend.height; y += 1) {
      const i = 4 * (y * legend.width + x);
      pixels.data[i] = lut[v];
      pixels.data[i + 1] = lut[v + 1];
      pixels.data[i + 2] = lut[v + 2];
      pixels.data[i + 3] = 255;
    }
  }
  ctx.putImageData(pixels, 0, 0);
}

function colourTable(hex) {
  const table = new Uint8Array(768);
  for (let i = 0; i < 768; i += 1) table[i] = parseInt(hex.substr(2 * i, 2), 16);
  return table;
}

function fillColormaps(data) {
  state.colormaps = {};
  for (const [name, hex] of Object.entries(data.colormaps)) {
    state.colormaps[name] = colourTable(hex);
    $("cmap").append(option(name, name, name === data.default));
  }
  // signed maps (zero at 128) always get the diverging colormap: red for, blue against
  state.signedColours = colourTable(data.signed);
  state.cmap = data.default;
  drawLegend();
}

function selectedMethods() {
  return [...document.querySelectorAll("#methods input:checked")].map((box) => box.value);
}

function onMethodsChanged() {
  const names = new Set(selectedMethods());
  const layered = state.methods.some((m) => names.has(m.name) && m.needs_layer);
  $("layer").disabled = !layered;
  $("layer").title = layered ? "" : "none of the chosen methods uses a layer";
  updateButtons();
}

// ------------------------------------------------------------------ layers

async function loadLayers() {
  state.layers = null;
  const data = await busy("Loading the model's layers…", () =>
    getJSON("/api/layers?model=" + encodeURIComponent(state.model)));
  if (!data) return false;
  state.layers = data;
  fillLayers();
  return true;
}

function shapeText(shape) {
  return shape && shape.length === 4 ? shape.slice(1).join("×") : (shape || []).join("×");
}

function fillLayers() {
  const data = state.layers;
  const select = $("layer");
  const keep = select.value;
  select.replaceChildren(option("auto", "auto: " + (data.default || "none") + " (default)", true));
  const every = $("all-layers").checked;
  const rows = data.layers.filter((l) => l.spatial && (every || l.sweep || l.default));
  for (const layer of rows) {
    const mark = layer.default ? "  ★ default" : "";
    select.append(option(layer.name, layer.name + "  ·  " + shapeText(layer.output_shape) + mark, false));
  }
  if ([...select.options].some((o) => o.value === keep)) select.value = keep;
}

// ------------------------------------------------------------------ image and predictions

function chooseFile(file) {
  $("file").value = "";  // choosing the same file again must fire "change" again
  if (!file) return;
  clearError();
  if (file.size > state.maxUpload) {
    showError("The file " + file.name + " is " + (file.size / 1e6).toFixed(1) + " MB; this server " +
      "accepts images up to " + (state.maxUpload / 1e6).toFixed(0) + " MB. Downscale or re-compress it.");
    return;
  }
  classify({ file });
}

function chooseSample(name) {
  clearError();
  if (!name) return;
  classify({ sample: name });
}

// Classify `image`; only when that works does it become the page's image (a file that is not
// an image leaves the previous picture, predictions and maps as they were).
async function classify(image) {
  const previous = state.image;
  state.image = image;
  const data = await busy("Classifying the image…", () => postForm("/api/classify", { top_k: 5 }));
  if (!data) {
    state.image = previous;
    $("sample").value = previous && previous.sample ? previous.sample : "";
    updateButtons();
    return false;
  }
  $("sample").value = image.sample || "";
  state.target = null;
  resetResults();
  state.predictions = data.predictions;
  await setInput(data.input);
  const size = data.image_size.join("×");
  $("source").textContent = data.source + " · " + size + " px, shown as the model sees it";
  $("preview").hidden = false;
  renderPredictions();
  return true;
}

function setInput(url) {
  return new Promise((resolve) => {
    const img = $("input-img");
    img.onload = () => { state.input = img; resolve(); };
    img.onerror = () => resolve();
    img.src = url;
  });
}

function renderPredictions() {
  const list = $("predictions");
  list.replaceChildren();
  $("predictions-hint").textContent = "Click a class to explain it.";
  state.predictions.forEach((p, rank) => {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "prediction";
    button.dataset.index = String(p.index);
    if ((state.target === null && rank === 0) || state.target === p.index) button.classList.add("selected");
    const rankEl = span("rank", String(rank + 1));
    const name = span("name", p.name);
    name.title = p.name + " (class " + p.index + ")";
    name.append(" ", span("index", "#" + p.index));
    const prob = span("prob", percent(p.probability));
    const bar = span("bar", "");
    const fill = document.createElement("span");
    fill.style.width = Math.max(1, p.probability * 100).toFixed(1) + "%";
    bar.append(fill);
    button.append(rankEl, name, prob, bar);
    button.addEventListener("click", () => {
      state.target = rank === 0 ? null : p.index;
      renderPredictions();
      explain();
    });
    const item = document.createElement("li");
    item.append(button);
    list.append(item);
  });
}

function span(cls, text) {
  const el = document.createElement("span");
  el.className = cls;
  el.textContent = text;
  return el;
}

function percent(p) {
  if (p === null || p === undefined) return "";
  return p >= 0.001 ? (100 * p).toFixed(1) + "%" : "<0.1%";
}

function targetField() {
  return state.target === null ? "top1" : String(state.target);
}

// ------------------------------------------------------------------ explain

async function explain() {
  const methods = selectedMethods();
  if (!state.image || methods.length === 0) return;
  clearError();
  const layer = $("layer").disabled ? "auto" : $("layer").value;
  const data = await busy("Explaining with " + methods.join(", ") + "…", (id, signal) =>
    postForm("/api/explain", { methods: methods.join(","), layer, target: targetField(), top_k: 5 },
      id, signal), true);
  if (!data) return;
  await setInput(data.input);
  data.images = await Promise.all(data.maps.map((m) => loadImage(m.values)));
  state.explain = data;
  renderExplain();
}

function loadImage(url) {
  return new Promise((resolve, reject) => {
    const img = new Image();
    img.onload = () => resolve(img);
    img.onerror = () => reject(new Error("the browser could not decode a map from the server"));
    img.src = url;
  });
}

function resetResults() {
  state.explain = null;
  state.sweep = null;
  $("maps").replaceChildren();
  $("explain-summary").hidden = true;
  $("downloads").hidden = true;
  $("skipped").hidden = true;
  $("sweep-view").hidden = true;
  $("predictions").replaceChildren();
  $("predictions-hint").textContent = "Choose an image to see the model's top 5 classes.";
}

function renderExplain() {
  const data = state.explain;
  const t = data.target;
  const summary = $("explain-summary");
  summary.replaceChildren("Why ", strong(t.name), " (class " + t.index + ", " + percent(t.probability) +
    ")? The higher the map (see the colour scale), the more that region raised this class's score.");
  summary.hidden = false;
  const maps = $("maps");
  maps.replaceChildren(panel(null, "input", "the picture the model saw"));
  data.maps.forEach((m, i) => {
    const note = m.blank ? "blank map: nothing to show"
      : m.kind === "cam" ? "class activation map"
      : m.signed ? "signed: red raised the score, blue lowered it" : "pixel-space map, |map|";
    maps.append(panel(i, m.title, note));
  });
  drawExplain();
  if (data.skipped.length) {
    $("skipped").textContent = "Skipped: " + data.skipped.map((s) => s.method + " (" + s.detail + ")").join("; ");
    $("skipped").hidden = false;
  } else {
    $("skipped").hidden = true;
  }
  $("downloads").hidden = false;
  updateDownloads();
}

function strong(text) {
  const el = document.createElement("strong");
  el.textContent = text;
  return el;
}

function panel(index, title, note) {
  const figure = document.createElement("figure");
  figure.className = "panel";
  const canvas = document.createElement("canvas");
  canvas.width = 224;
  canvas.height = 224;
  canvas.className = index === null ? "input" : "overlay";
  if (index !== null) canvas.dataset.map = String(index);
  const caption = document.createElement("figcaption");
  caption.append(strong(title), span("muted", note));
  figure.append(canvas, caption);
  return figure;
}

function drawExplain() {
  const data = state.explain;
  if (!data) return;
  for (const canvas of $("maps").querySelectorAll("canvas")) {
    if (canvas.classList.contains("input")) {
      drawOverlay(canvas, null, false);
    } else {
      const i = Number(canvas.dataset.map);
      drawOverlay(canvas, data.images[i], data.maps[i].blank, data.maps[i].signed);
    }
  }
}

// Picture, then the coloured map over it at the chosen opacity; a blank map: the picture faded.
// A signed map is coloured with the diverging colormap whatever colormap is chosen.
function drawOverlay(canvas, values, blank, signed = false) {
  const ctx = canvas.getContext("2d");
  const w = canvas.width;
  const h = canvas.height;
  ctx.globalAlpha = 1;
  ctx.clearRect(0, 0, w, h);
  if (state.input) ctx.drawImage(state.input, 0, 0, w, h);
  if (values && !blank) {
    ctx.globalAlpha = state.opacity;
    ctx.drawImage(colorize(values, w, h, signed), 0, 0);
    ctx.globalAlpha = 1;
  } else if (values && blank) {
    ctx.fillStyle = "rgba(255, 255, 255, 0.55)";
    ctx.fillRect(0, 0, w, h);
  }
  canvas.dataset.drawn = "true";
}

function colorize(values, w, h, signed = false) {
  const scratch = document.createElement("canvas");
  scratch.width = w;
  scratch.height = h;
  const ctx = scratch.getContext("2d");
  ctx.drawImage(values, 0, 0, w, h);
  const pixels = ctx.getImageData(0, 0, w, h);
  const lut = signed ? state.signedColours : state.colormaps[state.cmap];
  const d = pixels.data;
  for (let i = 0; i < d.length; i += 4) {
    const v = d[i] * 3;
    d[i] = lut[v];
    d[i + 1] = lut[v + 1];
    d[i + 2] = lut[v + 2];
    d[i + 3] = 255;
  }
  ctx.putImageData(pixels, 0, 0);
  return scratch;
}

function updateDownloads() {
  const style = "?cmap=" + encodeURIComponent(state.cmap) + "&alpha=" + state.opacity.toFixed(2);
  for (const [prefix, data] of [["dl-", state.explain], ["dl-sweep-", state.sweep]]) {
    if (!data) continue;
    $(prefix + "figure").href = data.downloads.figure + style;
    $(prefix + "maps").href = data.downloads.maps;
    $(prefix + "manifest").href = data.downloads.manifest;
  }
}

// ------------------------------------------------------------------ sweep

async function sweep() {
  if (!state.image) return;
  clearError();
  const method = $("sweep-method").value;
  const data = await busy("Sweeping " + method + " over every layer…", (id, signal) =>
    postForm("/api/sweep", { method, layers: "all", target: targetField(), top_k: 5 }, id, signal),
    true);
  if (!data) return;
  await setInput(data.input);
  data.images = await Promise.all(data.layers.map((l) => loadImage(l.values)));
  state.sweep = data;
  const slider = $("sweep-slider");
  slider.max = String(data.layers.length - 1);
  slider.value = String(data.layers.length - 1);
  const t = data.target;
  $("sweep-summary").replaceChildren(data.method + " for ", strong(t.name), " (class " + t.index + ", " +
    percent(t.probability) + ") at " + data.layers.length + " layers of " + modelLabel(data.model));
  $("sweep-view").hidden = false;
  drawSweep();
  updateDownloads();
}

function drawSweep() {
  const data = state.sweep;
  if (!data) return;
  const i = Number($("sweep-slider").value);
  const layer = data.layers[i];
  drawOverlay($("sweep-canvas"), data.images[i], layer.blank);
  $("sweep-canvas").dataset.layer = layer.name;
  $("sweep-label").textContent = layer.name + "  ·  " + shapeText(layer.output_shape) +
    (layer.blank ? "  (blank map)" : "");
  $("sweep-position").textContent = "layer " + (i + 1) + " of " + data.layers.length +
    (i === 0 ? " (the first)" : i === data.layers.length - 1 ? " (the last)" : "");
}

// ------------------------------------------------------------------ controls

function bindControls() {
  $("error-close").addEventListener("click", clearError);
  $("cancel").addEventListener("click", () => { if (state.cancel) state.cancel.abort(); });
  $("file").addEventListener("change", (event) => chooseFile(event.target.files[0]));
  $("sample").addEventListener("change", (event) => chooseSample(event.target.value));
  const drop = $("drop");
  drop.addEventListener("keydown", (event) => {
    if (event.key === "Enter" || event.key === " ") { event.preventDefault(); $("file").click(); }
  });
  for (const name of ["dragenter", "dragover"]) {
    drop.addEventListener(name, (event) => { event.preventDefault(); drop.classList.add("over"); });
  }
  for (const name of ["dragleave", "drop"]) {
    drop.addEventListener(name, () => drop.classList.remove("over"));
  }
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    const file = event.dataTransfer && event.dataTransfer.files[0];
    if (file) chooseFile(file);
  });
  // a file dropped elsewhere on the page must not make the browser leave it
  window.addEventListener("dragover", (event) => event.preventDefault());
  window.addEventListener("drop", (event) => event.preventDefault());
  $("model").addEventListener("change", async (event) => {
    clearError();
    const previous = state.model;
    state.model = event.target.value;
    if (!(await loadLayers())) {  // the model could not be loaded: keep the one we had
      const message = $("error-text").textContent;
      state.model = previous;
      event.target.value = previous;
      await loadLayers();
      showError(message);
      return;
    }
    if (state.image) await classify(state.image);
  });
  $("all-layers").addEventListener("change", () => { if (state.layers) fillLayers(); });
  $("explain").addEventListener("click", explain);
  $("sweep").addEventListener("click", sweep);
  $("cmap").addEventListener("change", (event) => {
    state.cmap = event.target.value;
    drawLegend();
    drawExplain();
    drawSweep();
    updateDownloads();
  });
  $("opacity").addEventListener("input", (event) => {
    state.opacity = Number(event.target.value) / 100;
    $("opacity-value").textContent = event.target.value + "%";
    drawExplain();
    drawSweep();
    updateDownloads();
  });
  $("sweep-slider").addEventListener("input", drawSweep);
}

document.addEventListener("DOMContentLoaded", start);
