// The few-shot demo page: draw one character per class and a query; the page rasterizes
// the drawings to 28x28 as the original demo's page does, fine-tunes the exported model
// on them in a Web Worker (worker.js), and shows the query's class probabilities. With
// ?engine=server (pages served by `python -m supervised_reptile.demo`) the Python server
// fine-tunes instead. ?backend=cpu picks the worker's own CPU engine (cpunet.js),
// ?backend=webgl TensorFlow.js's WebGL backend (default: WebGL where the browser runs it on
// a GPU, else the CPU engine).
//
// Globals from the exported scripts: REPTILE_MODEL (model.js), REPTILE_WORKER_SOURCE
// (engine.js: TensorFlow.js + cpunet.js + worker.js as one string, as a worker is built from a Blob:
// browsers refuse worker script URLs on file:// pages), REPTILE_DEFAULT_DRAWING (default.js).
'use strict';

const IMAGE_SIZE = 28;
const LINE_WIDTH = 0.05;   // of the canvas size, as the original's drawing.js (and drawing.py)
const CENTERED_PAD = 0.9;  // margin around the bounding box, of its larger extent
const VIEW_SIZE = 200;     // pixels of a drawing box's canvas
const params = new URLSearchParams(location.search);

// --- Rasterizing: the original's drawing code, as drawing.py reproduces it ---------------

// Strokes mapped so that their bounding box is centered in the unit square with margin; a
// drawing that is one dot goes to the middle of the center pixel (as drawing.py).
function centered(strokes) {
  const points = strokes.flat();
  const low = [0, 1].map((k) => Math.min(...points.map((p) => p[k])));
  const high = [0, 1].map((k) => Math.max(...points.map((p) => p[k])));
  const side = Math.max(high[0] - low[0], high[1] - low[1]) * (1 + CENTERED_PAD);
  if (side === 0) {
    const center = (Math.floor(IMAGE_SIZE / 2) + 0.5) / IMAGE_SIZE;
    return strokes.map((s) => s.map((p) => [p[0] - low[0] + center, p[1] - low[1] + center]));
  }
  const corner = [0, 1].map((k) => (high[k] + low[k]) / 2 - side / 2);
  return strokes.map((s) => s.map((p) => [(p[0] - corner[0]) / side, (p[1] - corner[1]) / side]));
}

// Draw strokes given in unit coordinates on a canvas of `size` pixels; one point is a dot.
function drawStrokes(ctx, size, strokes) {
  for (let stroke of strokes) {
    if (stroke.length < 2) stroke = [stroke[0], [stroke[0][0] + 0.001, stroke[0][1] + 0.001]];
    ctx.beginPath();
    ctx.moveTo(stroke[0][0] * size, stroke[0][1] * size);
    for (const [x, y] of stroke.slice(1)) ctx.lineTo(x * size, y * size);
    ctx.stroke();
  }
}

// The drawing as a 28x28 image (Float32Array, 1 = background, 0 = ink): black strokes with
// square caps and miter joins on a transparent canvas, ink where the alpha is over 128.
function rasterize(strokes) {
  const canvas = document.createElement('canvas');
  canvas.width = canvas.height = IMAGE_SIZE;
  const ctx = canvas.getContext('2d', {willReadFrequently: true});
  Object.assign(ctx, {strokeStyle: 'black', lineWidth: LINE_WIDTH * IMAGE_SIZE, lineCap: 'square', lineJoin: 'miter'});
  drawStrokes(ctx, IMAGE_SIZE, centered(strokes));
  const rgba = ctx.getImageData(0, 0, IMAGE_SIZE, IMAGE_SIZE).data;
  return Float32Array.from({length: IMAGE_SIZE * IMAGE_SIZE}, (_, i) => (rgba[4 * i + 3] > 128 ? 0 : 1));
}

// --- The model file: checked before use ---------------------------------------------------

// CRC-32 (as Python's zlib.crc32) of bytes: tells a damaged model.js from a good one.
function crc32(bytes) {
  let crc = ~0;
  for (const byte of bytes) {
    crc ^= byte;
    for (let k = 0; k < 8; k++) crc = (crc >>> 1) ^ (0xEDB88320 & -(crc & 1));
  }
  return ~crc >>> 0;
}

// {rule, shapes, buffer} of model.js; throws a message for the page when it is absent or damaged.
function readModel() {
  const model = self.REPTILE_MODEL;
  const fix = 'export the page again (reptile-export MODEL --web DIR)';
  if (!model || typeof model.data !== 'string') throw new Error(`The model file model.js is missing or unreadable: ${fix}.`);
  let bytes;
  try {
    bytes = Uint8Array.from(atob(model.data), (c) => c.charCodeAt(0));
  } catch (err) {
    throw new Error(`The model file model.js is corrupt (its data is not base64): ${fix}.`);
  }
  if (bytes.length !== model.bytes || crc32(bytes) !== model.crc32) {
    throw new Error(`The model file model.js is corrupt (${bytes.length} bytes, checksum mismatch): ${fix}.`);
  }
  return {rule: model.rule, shapes: model.shapes, buffer: bytes.buffer, ways: model.ways};
}

// --- Engines: the browser's worker, or the Python server ----------------------------------

// Fine-tunes in a Web Worker built from the bundled source. Only the latest job waits while
// one runs: older waiting jobs are answered null (a newer drawing replaced them).
class BrowserEngine {
  constructor(model, backend) {
    const url = URL.createObjectURL(new Blob([self.REPTILE_WORKER_SOURCE], {type: 'text/javascript'}));
    this.worker = new Worker(url);
    this.running = null;
    this.waiting = null;
    this.ready = new Promise((resolve, reject) => {
      this.worker.onmessage = (event) => (event.data.type === 'ready' ? resolve(event.data.backend) : reject(new Error(event.data.message)));
      this.worker.onerror = (event) => reject(new Error(event.message));
    });
    this.worker.postMessage({type: 'init', model: {rule: model.rule, shapes: model.shapes, buffer: model.buffer}, backend},
                            [model.buffer]);
    this.ready.then(() => { this.worker.onmessage = (event) => this.finished(event.data); });
  }

  classify(images) {
    return new Promise((resolve, reject) => {
      if (this.waiting) this.waiting.resolve(null);
      this.waiting = {images, resolve, reject};
      if (!this.running) this.next();
    });
  }

  next() {
    this.running = this.waiting;
    this.waiting = null;
    if (!this.running) return;
    const flat = new Float32Array(this.running.images.length * IMAGE_SIZE * IMAGE_SIZE);
    this.running.images.forEach((image, i) => flat.set(image, i * image.length));
    this.worker.postMessage({type: 'classify', images: flat}, [flat.buffer]);
  }

  finished(result) {
    const job = this.running;
    if (result.type === 'answer') job.resolve(result.probs); else job.reject(new Error(result.message));
    this.next();
  }
}

// Fine-tunes with the package's Python code: POST the drawings to the demo server.
class ServerEngine {
  constructor() { this.ready = Promise.resolve('python'); }

  async classify(images, drawings) {
    const response = await fetch('api/classify', {method: 'POST', headers: {'Content-Type': 'application/json'},
                                                  body: JSON.stringify({drawings})});
    const result = await response.json();
    if (!response.ok) throw new Error(result.error);
    return result.probs;
  }
}

// --- The page ------------------------------------------------------------------------------

const cells = [];  // one per class, then the query: {strokes, canvas, seen}
let engine = null;
let requested = 0;  // id of the latest answer asked for; older answers are ignored
let settle = [];    // callbacks waiting for the next answer shown (the test hook)

// A box to draw in, with its Clear button and the 28x28 image the network sees.
function makeCell(title, isQuery) {
  const box = document.createElement('div');
  box.className = 'cell' + (isQuery ? ' query' : '');
  box.innerHTML = `<h3>${title}</h3><canvas class="draw" width="${VIEW_SIZE}" height="${VIEW_SIZE}"></canvas>
    <div class="tools"><button type="button">Clear</button><canvas class="seen" width="${IMAGE_SIZE}"
    height="${IMAGE_SIZE}" title="what the network sees"></canvas></div>`;
  document.getElementById(isQuery ? 'query' : 'classes').appendChild(box);
  const cell = {strokes: [], canvas: box.querySelector('canvas.draw'), seen: box.querySelector('canvas.seen')};
  listen(cell);
  box.querySelector('button').addEventListener('click', () => { cell.strokes = []; redraw(cell); update(); });
  cells.push(cell);
}

// Pointer events (mouse, pen and touch alike) add strokes in canvas fractions.
function listen(cell) {
  let active = false;
  const point = (e) => {
    const r = cell.canvas.getBoundingClientRect();
    return [(e.clientX - r.left) / r.width, (e.clientY - r.top) / r.height];
  };
  cell.canvas.addEventListener('pointerdown', (e) => {
    cell.canvas.setPointerCapture(e.pointerId);
    active = true;
    cell.strokes.push([point(e)]);
    redraw(cell);
  });
  cell.canvas.addEventListener('pointermove', (e) => {
    if (!active) return;
    cell.strokes[cell.strokes.length - 1].push(point(e));
    redraw(cell);
  });
  const end = () => { if (active) { active = false; update(); } };
  cell.canvas.addEventListener('pointerup', end);
  cell.canvas.addEventListener('pointercancel', end);
}

// Show the strokes round and grey, as the original's page does.
function redraw(cell) {
  const ctx = cell.canvas.getContext('2d');
  ctx.clearRect(0, 0, VIEW_SIZE, VIEW_SIZE);
  Object.assign(ctx, {strokeStyle: '#777', lineWidth: LINE_WIDTH * VIEW_SIZE, lineCap: 'round', lineJoin: 'round'});
  drawStrokes(ctx, VIEW_SIZE, cell.strokes);
  if (!cell.strokes.length) cell.seen.getContext('2d').clearRect(0, 0, IMAGE_SIZE, IMAGE_SIZE);
}

// The 28x28 image the network gets, black ink on white.
function showSeen(canvas, image) {
  const ctx = canvas.getContext('2d'), pixels = ctx.createImageData(IMAGE_SIZE, IMAGE_SIZE);
  image.forEach((value, i) => { pixels.data.fill(value ? 255 : 0, 4 * i, 4 * i + 3); pixels.data[4 * i + 3] = 255; });
  ctx.putImageData(pixels, 0, 0);
}

// One bar and percentage (one decimal) per class, the most likely one highlighted.
function showChart(probs) {
  const chart = document.getElementById('chart'), best = probs.indexOf(Math.max(...probs));
  chart.innerHTML = probs.map((p, i) => `<div class="bar-row${i === best ? ' best' : ''}"><span class="label">Class ${i + 1}</span>` +
    `<div class="bar-track"><div class="bar"></div></div><span class="value">${(100 * p).toFixed(1)}%</span></div>`).join('');
  chart.querySelectorAll('.bar').forEach((bar, i) => { bar.style.width = `${(100 * probs[i]).toFixed(2)}%`; bar.dataset.prob = probs[i]; });
  chart.classList.remove('stale');
}

function say(text, isError) {
  const status = document.getElementById('status');
  status.textContent = text;
  status.classList.toggle('error', Boolean(isError));
}

// Rasterize, fine-tune and classify once every box has a drawing; shows and returns the answer.
async function update() {
  const id = ++requested;
  if (cells.some((c) => !c.strokes.length)) {
    document.getElementById('chart').classList.add('stale');
    say(`Draw in all ${cells.length} boxes to see the prediction.`);
    return null;
  }
  const start = performance.now();
  const drawings = cells.map((c) => c.strokes);
  const images = drawings.map(rasterize);
  images.forEach((image, i) => showSeen(cells[i].seen, image));
  say('Fine-tuning…');
  try {
    const probs = await engine.classify(images, drawings);
    if (probs === null || id !== requested) return null;  // a newer drawing is on its way
    const answer = {id, probs, tensors: images.map((image) => Array.from(image)), ms: performance.now() - start,
                    backend: await engine.ready};
    showChart(probs);
    say(`Fine-tuned and classified in ${Math.round(answer.ms)} ms (${answer.backend}).`);
    settle.splice(0).forEach((resolve) => resolve(answer));
    window.reptileDemo.last = answer;
    return answer;
  } catch (err) {
    if (id === requested) say('Error: ' + err.message, true);
    return null;
  }
}

// Test and benchmark hook: set every box's strokes (or keep them) and wait for the answer
// {probs, tensors, ms, backend}.
function answerFor(drawings) {
  if (drawings) drawings.forEach((strokes, i) => { cells[i].strokes = strokes; redraw(cells[i]); });
  const shown = new Promise((resolve) => settle.push(resolve));
  update();
  return shown;
}

// Build the page, load the model (showing why when it cannot) and answer the default drawing.
async function start() {
  window.reptileDemo = {answerFor, last: null, error: null};
  try {
    const model = readModel();
    for (let i = 0; i < model.ways; i++) makeCell(`Class ${i + 1}`, false);
    makeCell('Query', true);
    engine = params.get('engine') === 'server' ? new ServerEngine() : makeBrowserEngine(model, params.get('backend'));
    say('Loading the network…');
    window.reptileDemo.backend = await engine.ready;
  } catch (err) {
    window.reptileDemo.error = err.message;
    say(err.message, true);
    return;
  }
  const paths = (self.REPTILE_DEFAULT_DRAWING || {paths: [[]]}).paths;  // without default.js: empty boxes
  cells.forEach((cell, i) => { cell.strokes = i === cells.length - 1 ? paths[paths.length - 1] : paths[i] || []; redraw(cell); });
  update();
}

function makeBrowserEngine(model, backend) {
  if (typeof self.REPTILE_WORKER_SOURCE !== 'string') {
    throw new Error('The engine file engine.js is missing or unreadable: export the page again (reptile-export MODEL --web DIR).');
  }
  return new BrowserEngine(model, backend);
}

document.addEventListener('DOMContentLoaded', start);
