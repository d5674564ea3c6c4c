'use strict';
// Run an ONNX model once with ONNX Runtime (onnxruntime-node) on .npy inputs and write .npy
// outputs: the reference side of `inferd exec`, with the same arguments.
//
// Usage: NODE_PATH=bench/.peers/node_modules node tools/ort_run.js MODEL.onnx \
//          --input NAME=FILE.npy [--input ...] --output-dir DIR [--threads N]
//
// Writes DIR/<output name>.npy for every graph output and prints one JSON line:
//   {"ort": "<version>", "outputs": {"<name>": {"dtype": "<descr>", "shape": [...]}, ...}}
// The session uses graphOptimizationLevel 'all' (what a deployed ORT does), sequential
// execution and N intra-op threads (default 1, so reference outputs do not depend on the
// machine's core count).
//
// The .npy reader and writer below handle what the engine fixtures need: little-endian
// float32, float64, int64, int32 and bool, C order, format versions 1.0 to 3.0 on read
// and 1.0 on write.
const fs = require('fs');
const path = require('path');

let ort;
try {
  ort = require('onnxruntime-node');
} catch (e) {
  process.stderr.write('ort_run.js: cannot load onnxruntime-node; set NODE_PATH to a ' +
    'node_modules that holds it (see ../shared/peers/README.md)\n');
  process.exit(2);
}

// numpy descr <-> ORT tensor type and the typed array that holds its elements.
const DTYPES = {
  '<f4': { ort: 'float32', array: Float32Array },
  '<f8': { ort: 'float64', array: Float64Array },
  '<i8': { ort: 'int64', array: BigInt64Array },
  '<i4': { ort: 'int32', array: Int32Array },
  '|b1': { ort: 'bool', array: Uint8Array },
};
const DESCR_OF_ORT = Object.fromEntries(Object.entries(DTYPES).map(([d, t]) => [t.ort, d]));

function fail(msg) {
  process.stderr.write(`ort_run.js: ${msg}\n`);
  process.exit(1);
}

// Parse the Python-literal header dict numpy writes, e.g.
// {'descr': '<f4', 'fortran_order': False, 'shape': (3, 7), }
function parseHeader(text, file) {
  const descr = /'descr':\s*'([^']+)'/.exec(text);
  const fortran = /'fortran_order':\s*(True|False)/.exec(text);
  const shape = /'shape':\s*\(([^)]*)\)/.exec(text);
  if (!descr || !fortran || !shape) fail(`${file}: unreadable .npy header ${JSON.stringify(text)}`);
  if (fortran[1] === 'True') fail(`${file}: Fortran-order arrays are not supported`);
  const dims = shape[1].split(',').map((s) => s.trim()).filter((s) => s.length > 0).map(Number);
  if (dims.some((d) => !Number.isInteger(d) || d < 0)) fail(`${file}: bad shape ${shape[1]}`);
  // '=' (native order) is little-endian on every machine we run on.
  return { descr: descr[1].replace(/^=/, '<'), dims };
}

function readNpy(file) {
  const buf = fs.readFileSync(file);
  if (buf.length < 10 || buf.readUInt8(0) !== 0x93 || buf.toString('latin1', 1, 6) !== 'NUMPY')
    fail(`${file}: not a .npy file`);
  const major = buf.readUInt8(6);
  let headerLen, start;
  if (major === 1) {
    headerLen = buf.readUInt16LE(8);
    start = 10;
  } else if (major === 2 || major === 3) {
    headerLen = buf.readUInt32LE(8);
    start = 12;
  } else {
    fail(`${file}: .npy format version ${major} is not supported`);
  }
  const header = parseHeader(buf.toString('latin1', start, start + headerLen), file);
  const t = DTYPES[header.descr];
  if (!t) fail(`${file}: dtype ${header.descr} is not supported`);
  const count = header.dims.reduce((a, b) => a * b, 1);
  const offset = start + headerLen;
  const bytes = count * t.array.BYTES_PER_ELEMENT;
  if (buf.length - offset !== bytes)
    fail(`${file}: ${buf.length - offset} data bytes, ${bytes} expected for [${header.dims}]`);
  // Copy into a fresh, aligned buffer: the typed array needs an element-aligned offset.
  const data = new t.array(count);
  Buffer.from(data.buffer).set(buf.subarray(offset, offset + bytes));
  return new ort.Tensor(t.ort, data, header.dims);
}

function writeNpy(file, tensor) {
  const descr = DESCR_OF_ORT[tensor.type];
  if (!descr) fail(`output type ${tensor.type} cannot be written as .npy`);
  const dims = tensor.dims.map(Number);
  const shape = dims.length === 1 ? `(${dims[0]},)` : `(${dims.join(', ')})`;
  let header = `{'descr': '${descr}', 'fortran_order': False, 'shape': ${shape}, }`;
  // As numpy does: pad with spaces so that magic + header ends on a 64-byte boundary.
  const total = 10 + header.length + 1;
  header += ' '.repeat((64 - (total % 64)) % 64) + '\n';
  const pre = Buffer.alloc(10);
  pre.writeUInt8(0x93, 0);
  pre.write('NUMPY', 1, 'latin1');
  pre.writeUInt8(1, 6);
  pre.writeUInt8(0, 7);
  pre.writeUInt16LE(header.length, 8);
  const data = tensor.data;
  const body = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  fs.writeFileSync(file, Buffer.concat([pre, Buffer.from(header, 'latin1'), body]));
  return { dtype: descr, shape: dims };
}

function parseArgs(argv) {
  const a = { model: null, inputs: {}, outputDir: null, threads: 1 };
  for (let i = 0; i < argv.length; i++) {
    const v = argv[i];
    const next = () => {
      if (i + 1 >= argv.length) fail(`${v} needs a value`);
      return argv[++i];
    };
    if (v === '--input') {
      const kv = next();
      const eq = kv.indexOf('=');
      if (eq <= 0) fail(`--input wants NAME=FILE.npy, got ${kv}`);
      a.inputs[kv.slice(0, eq)] = kv.slice(eq + 1);
    } else if (v === '--output-dir') {
      a.outputDir = next();
    } else if (v === '--threads') {
      a.threads = Number(next());
      if (!Number.isInteger(a.threads) || a.threads < 1) fail('--threads wants a positive integer');
    } else if (v.startsWith('--')) {
      fail(`unknown option ${v}`);
    } else if (a.model === null) {
      a.model = v;
    } else {
      fail(`unexpected argument ${v}`);
    }
  }
  if (!a.model || !a.outputDir)
    fail('usage: ort_run.js MODEL --input NAME=FILE.npy ... --output-dir DIR [--threads N]');
  return a;
}

async function main() {
  const a = parseArgs(process.argv.slice(2));
  const session = await ort.InferenceSession.create(a.model, {
    graphOptimizationLevel: 'all',
    executionMode: 'sequential',
    intraOpNumThreads: a.threads,
    interOpNumThreads: 1,
    executionProviders: ['cpu'],
  });
  const feeds = {};
  for (const name of session.inputNames) {
    if (!(name in a.inputs)) fail(`model input ${name} has no --input`);
    feeds[name] = readNpy(a.inputs[name]);
  }
  for (const name of Object.keys(a.inputs))
    if (!session.inputNames.includes(name)) fail(`--input ${name} is not a model input`);
  const results = await session.run(feeds);
  fs.mkdirSync(a.outputDir, { recursive: true });
  const outputs = {};
  for (const name of session.outputNames)
    outputs[name] = writeNpy(path.join(a.outputDir, `${name}.npy`), results[name]);
  await session.release();
  process.stdout.write(JSON.stringify({ ort: ort.env.versions.common, outputs }) + '\n');
}

main().catch((e) => fail(e && e.stack ? e.stack : String(e)));
