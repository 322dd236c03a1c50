// Runs a .tflite of tools/export.py with MediaPipe Tasks (the metadata in the file tells
// MediaPipe the labels, the input and the decoding) and draws what it finds. For tests:
// window.runOn(url) resolves to window.lastResult (or null, with window.lastError set), and
// document.body.dataset.state ends as 'done' or 'error'.
import {FilesetResolver, ImageSegmenter, ObjectDetector}
  from './node_modules/@mediapipe/tasks-vision/vision_bundle.mjs';

const params = new URLSearchParams(location.search);
const task = params.get('task') === 'segmentation' ? 'segmentation' : 'detection';
const threshold = Number(params.get('threshold') ?? 0.3);
const maxResults = Number(params.get('max') ?? 100);
const $ = (id) => document.getElementById(id);
const canvas = $('canvas'), ctx = canvas.getContext('2d');
const COLORS = [[230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48],
  [145, 30, 180], [70, 240, 240], [240, 50, 230], [210, 245, 60], [0, 128, 128]];
const wasm = FilesetResolver.forVisionTasks(
  new URL('node_modules/@mediapipe/tasks-vision/wasm', location.href).href);
const seen = [];
function colorOf(label) {  // one colour per class name, in the order they show up
  if (!seen.includes(label)) seen.push(label);
  return COLORS[seen.indexOf(label) % COLORS.length];
}
class UserError extends Error {}
let runner = null, model = null, modelError = null, lastImage = null;
window.lastResult = null;
window.lastError = null;

function setState(state, text = '') {
  document.body.dataset.state = state;
  $('status').textContent = text;
  if (state !== 'error') $('error').textContent = '';
}

function report(error) {  // one sentence on the page, not only a console error
  window.lastError = error instanceof UserError ? error.message
    : `Unexpected error: ${String(error.message ?? error).split('\n')[0]}`;
  $('error').textContent = window.lastError;
  setState('error');
  return null;
}

// The names in the flatbuffer's Model.metadata (field 6; Metadata.name is field 0):
// tools/export.py writes MediaPipe's under 'TFLITE_METADATA'.
function metadataNames(bytes) {
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const ref = (at) => at + v.getUint32(at, true);
  const field = (table, i) => {
    const vtable = table - v.getInt32(table, true), at = 4 + 2 * i;
    return at < v.getUint16(vtable, true) && v.getUint16(vtable + at, true)
      ? table + v.getUint16(vtable + at, true) : 0;
  };
  const root = ref(0), list = field(root, 6), names = [];
  if (!list) return names;
  const vector = ref(list);
  for (let i = 0; i < v.getUint32(vector, true); i++) {
    const name = field(ref(vector + 4 + 4 * i), 0);
    if (!name) continue;
    const text = ref(name);
    const start = text + 4;
    names.push(new TextDecoder().decode(bytes.subarray(start, start + v.getUint32(text, true))));
  }
  return names;
}

function check(bytes, name) {
  let names = null;
  try {
    if (new TextDecoder().decode(bytes.subarray(4, 8)) === 'TFL3') names = metadataNames(bytes);
  } catch { /* a truncated or corrupt flatbuffer: not a model */ }
  if (names === null) {
    throw new UserError(`${name} is not a LiteRT model: export one with tools/export.py ` +
      `--format tflite tflite-int8 and load its model_int8.tflite or model.tflite.`);
  }
  if (!names.includes('TFLITE_METADATA')) {
    throw new UserError(`${name} has no MediaPipe metadata: export it with tools/export.py ` +
      `(which writes the labels, input and decoding MediaPipe Tasks need) and load that file.`);
  }
}

async function fetchBytes(url) {
  const response = await fetch(url).catch(() => null);
  if (!response?.ok) {
    const why = response ? ` (HTTP ${response.status})` : '';
    throw new UserError(`Could not load the model ${url}${why}: put model_int8.tflite next to ` +
      `the page, give ?model=URL or pick the file.`);
  }
  return new Uint8Array(await response.arrayBuffer());
}

async function create(bytes, name) {
  runner?.close();
  runner = null;
  setState('loading', `Loading ${name} ...`);
  check(await bytes, name);
  const options = {baseOptions: {modelAssetBuffer: await bytes, delegate: 'CPU'},
    runningMode: 'IMAGE'};
  try {
    runner = task === 'segmentation'
      ? await ImageSegmenter.createFromOptions(await wasm, {...options, outputCategoryMask: true,
        outputConfidenceMasks: false})
      : await ObjectDetector.createFromOptions(await wasm, {...options, scoreThreshold: threshold,
        maxResults});
  } catch (error) {
    throw new UserError(`MediaPipe could not load ${name} as an ${task === 'segmentation'
      ? 'ImageSegmenter' : 'ObjectDetector (a segmentor needs ?task=segmentation)'}: ` +
      `${String(error.message ?? error).split(/\n|; /)[0].trim().replace(/\.$/, '')}.`);
  }
  setState('ready', `${name} loaded: pick an image.`);
}

function detect(image) {
  const lines = Math.max(1, image.naturalWidth / 300);  // line width; the font is 10x
  const detections = runner.detect(image).detections.map(({boundingBox: b, categories: [c]}) => ({
    label: c.categoryName || c.displayName || String(c.index), score: c.score,
    box: [b.originX, b.originY, b.originX + b.width, b.originY + b.height]}));
  ctx.font = `${10 * lines}px sans-serif`;
  ctx.lineWidth = lines;
  for (const d of detections) {
    const [x1, y1, x2, y2] = d.box, text = `${d.label} ${d.score.toFixed(2)}`;
    ctx.strokeStyle = ctx.fillStyle = `rgb(${colorOf(d.label)})`;
    ctx.strokeRect(x1, y1, x2 - x1, y2 - y1);
    const width = ctx.measureText(text).width + 2 * lines;  // the label above, inside the image
    const left = Math.max(0, Math.min(x1, canvas.width - width));
    const top = Math.max(0, y1 - 12 * lines);
    ctx.fillRect(left, top, width, 12 * lines);
    ctx.fillStyle = 'black';
    ctx.fillText(text, left + lines, top + 9.5 * lines);
  }
  return {detections, text: `${detections.length} detections above ${threshold}`};
}

function segment(image) {
  const result = runner.segment(image), mask = result.categoryMask, labels = runner.getLabels();
  const classes = mask.getAsUint8Array(), pixels = ctx.getImageData(0, 0, mask.width, mask.height);
  const counts = {};
  for (let i = 0; i < classes.length; i++) {
    const label = labels[classes[i]] ?? String(classes[i]);
    counts[label] = (counts[label] ?? 0) + 1;
    if (classes[i] === 0 && /background/i.test(label)) continue;
    const color = COLORS[(classes[i] + COLORS.length - 1) % COLORS.length];
    for (let c = 0; c < 3; c++) {
      pixels.data[4 * i + c] = 0.45 * color[c] + 0.55 * pixels.data[4 * i + c];
    }
  }
  ctx.putImageData(pixels, 0, 0);
  result.close?.();
  const text = Object.entries(counts).map(([label, n]) => `${label} ${n} px`).join(', ');
  return {labels, pixels: counts, text};
}

window.runOn = async (url) => {
  try {
    await model;
    if (!runner) throw modelError ?? new UserError('Load a model first: ?model=URL or pick it.');
    setState('running', `Running on ${url} ...`);
    const image = new Image();
    image.src = lastImage = url;
    await image.decode().catch(() => {
      throw new UserError(`Could not load the image ${url}: pick a JPEG or PNG file.`);
    });
    [canvas.width, canvas.height] = [image.naturalWidth, image.naturalHeight];
    ctx.drawImage(image, 0, 0);
    const started = performance.now();
    const result = (task === 'segmentation' ? segment : detect)(image);
    const ms = Math.round(performance.now() - started);
    window.lastResult = {task, width: image.naturalWidth, height: image.naturalHeight, ...result};
    window.lastError = null;
    setState('done', `${result.text} (${ms} ms).`);
    return window.lastResult;
  } catch (error) {
    return report(error);
  }
};

function load(bytes, name) {
  modelError = null;
  model = create(bytes, name).catch((error) => report(modelError = error));
  return model;
}

$('model-file').addEventListener('change', async (event) => {
  const [file] = event.target.files;
  if (file && (await load(file.arrayBuffer().then((b) => new Uint8Array(b)), file.name)) !== null
      && lastImage) window.runOn(lastImage);
});
$('image-file').addEventListener('change', (event) => {
  const [file] = event.target.files;
  if (file) window.runOn(URL.createObjectURL(file));
});

const modelUrl = params.get('model') ?? 'model_int8.tflite';
load(fetchBytes(modelUrl), modelUrl);
if (params.get('image')) window.runOn(params.get('image'));
