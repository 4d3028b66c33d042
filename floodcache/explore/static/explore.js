// floodcache explorer: the table of evaluated views, one view with its overlays, and prompts
// of the user's own answered by the server. Plain JavaScript, no library, no build step.
// Names from the user's files reach the page through textContent only, never as HTML.
"use strict";

const state = {
  summary: null, columns: [], rows: [], shown: [], sort: { column: "row", descending: false },
  view: null, prompt: null, asked: null, answerNumber: 0, hidden: new Set(),
};
const $ = (id) => document.getElementById(id);
const SVG = "http://www.w3.org/2000/svg";
const DRAG_PIXELS = 4; // a press that moves less than this is a click, not a box

async function getJSON(url, options) {
  const response = await fetch(url, options);
  const body = await response.json();
  if (!response.ok) throw new Error(body.error || response.statusText);
  return body;
}

function element(tag, text, className) {
  const made = document.createElement(tag);
  if (text !== undefined) made.textContent = text;
  if (className) made.className = className;
  return made;
}

function number(value) {
  return value === null || value === undefined ? "–" : value.toFixed(3);
}

// ---- the table ----------------------------------------------------------------------------

function visibleColumns() {
  const prompt = $("prompt-filter").value;
  return state.columns.filter((name, i) => {
    if (i < 6) return true; // row, image_id, view, split, water_fraction, audit finding
    return !prompt || name.endsWith(" " + prompt);
  });
}

function isChange(name) { return name.startsWith("change "); }

// a view's finding cell lists its labels, comma-separated ("none", "not recorded" alone)
function findingLabels(text) { return text.split(", "); }

function filteredRows() {
  const columns = visibleColumns();
  const changes = columns.filter(isChange).map((name) => state.columns.indexOf(name));
  const how = $("change-filter").value;
  const text = $("text-filter").value.trim().toLowerCase();
  const finding = $("finding-filter").value;
  const findingAt = state.columns.indexOf("audit finding");
  return state.rows.filter((row) => {
    if (text && !String(row[1]).toLowerCase().includes(text)) return false;
    if (finding && !findingLabels(row[findingAt]).includes(finding)) return false;
    if (how === "worse") return changes.some((i) => row[i] !== null && row[i] < 0);
    if (how === "better") return changes.some((i) => row[i] !== null && row[i] > 0);
    return true;
  });
}

function sortRows(rows) {
  const i = state.columns.indexOf(state.sort.column);
  const sign = state.sort.descending ? -1 : 1;
  return rows.slice().sort((a, b) => {
    if (a[i] === b[i]) return a[0] - b[0];
    if (a[i] === null) return 1; // skipped views last, whichever way
    if (b[i] === null) return -1;
    return (a[i] < b[i] ? -1 : 1) * sign;
  });
}

function renderTable() {
  const columns = visibleColumns();
  const indices = columns.map((name) => state.columns.indexOf(name));
  const head = element("tr");
  for (const name of columns) {
    const cell = element("th", name === "water_fraction" ? "water" : name);
    cell.dataset.column = name;
    if (name === state.sort.column) {
      cell.className = state.sort.descending ? "sorted-desc" : "sorted-asc";
    }
    cell.addEventListener("click", () => sortBy(name));
    head.append(cell);
  }
  $("views").tHead.replaceChildren(head);
  state.shown = sortRows(filteredRows());
  const body = document.createDocumentFragment();
  for (const row of state.shown) {
    const line = element("tr");
    line.dataset.row = row[0];
    if (state.view && state.view.row === row[0]) line.classList.add("selected");
    indices.forEach((i, k) => {
      const value = row[i];
      const text = typeof value === "number" && k >= 4 ? number(value) : String(value);
      const cell = element("td", text, typeof value === "string" ? "text" : "");
      if (isChange(columns[k]) && value) cell.classList.add(value < 0 ? "worse" : "better");
      line.append(cell);
    });
    line.addEventListener("click", () => openView(row[0]));
    body.append(line);
  }
  $("views").tBodies[0].replaceChildren(body);
  $("count").textContent = `${state.shown.length} of ${state.rows.length} views`;
}

function sortBy(column) {
  const descending = state.sort.column === column ? !state.sort.descending : false;
  state.sort = { column, descending };
  renderTable();
}

function step(by) {
  if (!state.shown.length) return;
  const at = state.view ? state.shown.findIndex((row) => row[0] === state.view.row) : -1;
  const next = Math.min(Math.max(at + by, 0), state.shown.length - 1);
  openView(state.shown[next][0]);
}

// ---- one view -----------------------------------------------------------------------------

async function openView(row) {
  $("status").textContent = "loading…";
  const view = await getJSON(`/api/view/${row}`);
  state.view = view;
  $("view-panel").hidden = false;
  $("view-title").textContent =
    `${view.image_id}, view ${view.view} (${view.split}), ` +
    `${view.original_size[1]}×${view.original_size[0]} px, ` +
    `water ${(100 * view.water_fraction).toFixed(1)}%`;
  $("preview").src = `/api/image/${row}`;
  const chosen = $("view-prompt").value || state.summary.prompts[0];
  $("view-prompt").value = chosen;
  for (const line of $("views").tBodies[0].rows) {
    line.classList.toggle("selected", Number(line.dataset.row) === row);
    if (Number(line.dataset.row) === row) line.scrollIntoView({ block: "nearest" });
  }
  $("status").textContent = "";
  showEvaluated(chosen);
}

function overlayNames() {
  return ["truth", ...state.summary.models.map((model) => model.name)];
}

function showEvaluated(prompt) {
  const evaluated = state.view.prompts[prompt];
  state.prompt = prompt;
  state.asked = copyPrompt(evaluated.prompt);
  state.answerNumber += 1; // an answer still on its way is for the prompt replaced here
  const masks = { truth: state.view.truth };
  for (const model of state.summary.models) {
    const result = evaluated.models[model.name];
    masks[model.name] = result ? result.mask : null;
  }
  drawOverlays(masks);
  drawPrompt();
  renderMetrics(null);
}

function copyPrompt(prompt) {
  if (!prompt) return { points: [], labels: [], box: null };
  return {
    points: (prompt.points || []).map((xy) => xy.slice()),
    labels: (prompt.labels || []).slice(),
    box: prompt.box ? prompt.box.slice() : null,
  };
}

function drawOverlays(masks) {
  const layer = $("overlays");
  for (const name of overlayNames()) {
    let image = layer.querySelector(`img[data-name="${CSS.escape(name)}"]`);
    if (!image) {
      image = element("img");
      image.dataset.name = name;
      image.alt = `${name} mask`;
      layer.append(image);
    }
    if (masks[name]) image.src = masks[name];
    else image.removeAttribute("src");
    image.hidden = !masks[name] || state.hidden.has(name);
  }
}

function drawPrompt() {
  const [height, width] = state.view.preview_size;
  const [fullHeight, fullWidth] = state.view.original_size;
  const sx = width / fullWidth;
  const sy = height / fullHeight;
  const layer = $("prompt-layer");
  layer.setAttribute("viewBox", `0 0 ${width} ${height}`);
  layer.replaceChildren();
  const box = state.asked.box;
  if (box) {
    const rect = document.createElementNS(SVG, "rect");
    const at = { x: box[0] * sx, y: box[1] * sy, width: (box[2] - box[0]) * sx,
      height: (box[3] - box[1]) * sy };
    for (const [key, value] of Object.entries(at)) rect.setAttribute(key, value);
    rect.setAttribute("fill", "none");
    rect.setAttribute("stroke", "#00ff66");
    rect.setAttribute("stroke-width", 2);
    layer.append(rect);
  }
  state.asked.points.forEach(([x, y], i) => {
    const dot = document.createElementNS(SVG, "circle");
    dot.setAttribute("cx", x * sx);
    dot.setAttribute("cy", y * sy);
    dot.setAttribute("r", 5);
    dot.setAttribute("fill", state.asked.labels[i] === 1 ? "#00ff66" : "#ff3355");
    dot.setAttribute("stroke", "#000");
    dot.setAttribute("class", state.asked.labels[i] === 1 ? "water-point" : "background-point");
    layer.append(dot);
  });
}

function renderMetrics(live) {
  const head = element("tr");
  // a large view's live IoU is counted at its preview size (explore.answers): say so
  const mine = live && live.iou_at === "preview" ? "your prompt: IoU (at preview size)"
    : "your prompt: IoU";
  for (const name of ["model", "evaluated IoU", "Dice", "predicted IoU", mine]) {
    head.append(element("th", name));
  }
  $("metrics").tHead.replaceChildren(head);
  const body = document.createDocumentFragment();
  const evaluated = state.view.prompts[state.prompt].models;
  for (const model of state.summary.models) {
    const result = evaluated[model.name];
    const line = element("tr");
    line.append(element("td", model.name, "text"));
    line.append(element("td", number(result && result.iou)));
    line.append(element("td", number(result && result.dice)));
    line.append(element("td", number(result && result.predicted_iou)));
    const mine = live ? live.models[model.name] : null;
    const cell = element("td", mine ? number(mine.iou) : "–", "live-iou");
    cell.dataset.model = model.name;
    line.append(cell);
    body.append(line);
  }
  $("metrics").tBodies[0].replaceChildren(body);
}

// ---- prompts of the user's own ------------------------------------------------------------

function originalPixel(event) {
  const rect = $("prompt-layer").getBoundingClientRect();
  const [height, width] = state.view.original_size;
  const x = ((event.clientX - rect.left) / rect.width) * width;
  const y = ((event.clientY - rect.top) / rect.height) * height;
  return [Math.min(Math.max(x, 0), width), Math.min(Math.max(y, 0), height)];
}

let pressed = null;

function onPress(event) {
  event.preventDefault();
  pressed = { x: event.clientX, y: event.clientY, at: originalPixel(event) };
}

function onRelease(event) {
  if (!pressed) return;
  const moved = Math.hypot(event.clientX - pressed.x, event.clientY - pressed.y);
  const at = originalPixel(event);
  if (moved >= DRAG_PIXELS) {
    const [x0, y0] = pressed.at;
    state.asked.box = [Math.min(x0, at[0]), Math.min(y0, at[1]),
      Math.max(x0, at[0]), Math.max(y0, at[1])];
  } else {
    const background = event.shiftKey || event.button === 2;
    state.asked.points.push(pressed.at);
    state.asked.labels.push(background ? 0 : 1);
  }
  pressed = null;
  drawPrompt();
  ask();
}

// Every change asks at once; an answer that comes back after a newer question is dropped, so
// the page never waits on the decoders and always shows the latest prompt's masks.
async function ask() {
  const number = ++state.answerNumber;
  $("status").textContent = "answering…";
  const body = JSON.stringify({ row: state.view.row, ...state.asked });
  try {
    const answer = await getJSON("/api/answer", { method: "POST", body,
      headers: { "Content-Type": "application/json" } });
    if (number !== state.answerNumber) return;
    const masks = { truth: state.view.truth };
    for (const [name, result] of Object.entries(answer.models)) masks[name] = result.mask;
    drawOverlays(masks);
    renderMetrics(answer);
    $("status").textContent = answer.multimask ? "one point: SAM's best of three masks" : "";
  } catch (error) {
    if (number === state.answerNumber) $("status").textContent = `refused: ${error.message}`;
  }
}

// ---- start --------------------------------------------------------------------------------

function buildToggles() {
  const colors = { truth: state.summary.truth_color };
  for (const model of state.summary.models) colors[model.name] = model.color;
  const toggles = $("toggles");
  for (const name of overlayNames()) {
    const label = element("label");
    const box = element("input");
    box.type = "checkbox";
    box.checked = true;
    box.dataset.name = name;
    box.addEventListener("change", () => {
      if (box.checked) state.hidden.delete(name);
      else state.hidden.add(name);
      const image = $("overlays").querySelector(`img[data-name="${CSS.escape(name)}"]`);
      if (image) image.hidden = !box.checked || !image.getAttribute("src");
    });
    const swatch = element("span", undefined, "swatch");
    swatch.style.background = colors[name];
    label.append(box, swatch, document.createTextNode(name === "truth" ? "ground truth" : name));
    toggles.append(label);
  }
}

async function start() {
  state.summary = await getJSON("/api/summary");
  $("random-weights").hidden = !state.summary.random_weights;
  $("about").textContent = `${state.summary.views} views of split ${state.summary.split}`;
  for (const prompt of state.summary.prompts) {
    $("prompt-filter").append(new Option(prompt, prompt));
    $("view-prompt").append(new Option(prompt, prompt));
  }
  buildToggles();
  const table = await getJSON("/api/table");
  state.columns = table.columns;
  state.rows = table.rows;
  const findingAt = state.columns.indexOf("audit finding");
  const labels = new Set(state.rows.flatMap((row) => findingLabels(row[findingAt])));
  for (const label of [...labels].sort()) $("finding-filter").append(new Option(label, label));
  renderTable();
  for (const id of ["prompt-filter", "change-filter", "text-filter", "finding-filter"]) {
    $(id).addEventListener("input", renderTable);
  }
  $("view-prompt").addEventListener("change", () => showEvaluated($("view-prompt").value));
  $("reset").addEventListener("click", () => showEvaluated(state.prompt));
  const layer = $("prompt-layer");
  layer.addEventListener("mousedown", onPress);
  layer.addEventListener("mouseup", onRelease);
  layer.addEventListener("contextmenu", (event) => event.preventDefault());
  document.addEventListener("keydown", (event) => {
    if (event.target.tagName === "INPUT" || event.target.tagName === "SELECT") return;
    if (event.key === "j" || event.key === "ArrowDown") { event.preventDefault(); step(1); }
    if (event.key === "k" || event.key === "ArrowUp") { event.preventDefault(); step(-1); }
  });
}

start().catch((error) => { $("about").textContent = `could not load: ${error.message}`; });
