// Unit tests of web/src/preprocess.js: `node --test web/test/` (or `npm test --prefix web`).
// fixtures.json holds what Pillow, NumPy and mobilevit_utils make of small deterministic images
// (web/test/make_fixtures.py writes it); the JavaScript must give the same bytes.
import {test} from "node:test";
import assert from "node:assert/strict";
import {readFileSync} from "node:fs";

import {
  SidecarError,
  fitToInput,
  prepare,
  probabilities,
  readContract,
  resize,
  rgbaToRgb,
  roundHalfEven,
  softmax,
  toInputTensor,
  topK,
} from "../src/preprocess.js";

const fixtures = JSON.parse(readFileSync(new URL("fixtures.json", import.meta.url), "utf8"));
const bytes = (b64, Type = Uint8Array) => {
  const buffer = Buffer.from(b64, "base64");
  return new Type(buffer.buffer.slice(buffer.byteOffset, buffer.byteOffset + buffer.byteLength));
};
const casesOf = (kind) => fixtures.cases.filter((c) => c.kind === kind);

// A sidecar as mobilevit_utils/export.py writes it for the released int8 file.
const SIDECAR = {
  precision: "int8",
  class_names: ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"],
  input_name: "image",
  input_shape: [32, 32, 3],
  batch_size: 1,
  input_dtype: "int8",
  preprocessing: {channel_order: "RGB", scale: 0.00392156862745098, in_model: true},
  output: "logits (apply softmax for probabilities)",
  input_quantization: {scale: 1.0, zero_point: -128},
  output_quantization: {scale: 0.024168366566300392, zero_point: -59},
  interpolation: "bilinear",
  crop_to_aspect_ratio: false,
  pad_to_aspect_ratio: false,
};
const DETAILS = {
  inputs: [{dtype: "int8", shape: Int32Array.from([1, 32, 32, 3])}],
  outputs: [{dtype: "int8", shape: Int32Array.from([1, 10])}],
};

function diffCount(a, b) {
  assert.equal(a.length, b.length);
  let n = 0;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) n++;
  return n;
}

test("resize gives Pillow's bytes for every filter, size and box", () => {
  const cases = casesOf("resize");
  assert.ok(cases.length >= 25);
  for (const c of cases) {
    const got = resize(bytes(fixtures.images[c.image]), c.width, c.height, c.out_width, c.out_height, c.filter, c.box);
    const what = `${c.filter} ${c.width}x${c.height} -> ${c.out_width}x${c.out_height} box ${c.box}`;
    assert.equal(diffCount(got, bytes(c.expected)), 0, what);
  }
});

test("fitToInput stretches, crops and pads as mobilevit_utils.data.resize_image", () => {
  const cases = casesOf("fit");
  assert.deepEqual(new Set(cases.map((c) => c.resize)), new Set(["stretch", "crop", "pad"]));
  for (const c of cases) {
    const contract = {width: c.out_width, height: c.out_height, resize: c.resize, interpolation: "bilinear"};
    const got = fitToInput(bytes(fixtures.images[c.image]), c.width, c.height, contract);
    assert.equal(diffCount(got, bytes(c.expected)), 0, `${c.resize} ${c.width}x${c.height}`);
  }
});

test("an image of the input's size is used as it is", () => {
  const rgb = Uint8Array.from({length: 2 * 3 * 3}, (_, i) => i * 7);
  const contract = {width: 3, height: 2, resize: "crop", interpolation: "bilinear"};
  assert.deepEqual(fitToInput(rgb, 3, 2, contract), rgb);
});

test("transparent pixels are composited on white as Pillow does", () => {
  for (const c of casesOf("rgba")) {
    assert.equal(diffCount(rgbaToRgb(bytes(c.pixels)), bytes(c.expected)), 0);
  }
});

test("the input tensor: channel order, scale and quantisation as NumPy computes them", () => {
  const types = {int8: Int8Array, uint8: Uint8Array, float32: Float32Array};
  for (const c of casesOf("tensor")) {
    const contract = {
      height: 4,
      width: 5,
      channelOrder: c.channel_order,
      inModel: c.in_model,
      scale: 1 / 255,
      offset: 0,
      inputDtype: c.dtype,
      inputQuantization: c.scale === null ? null : {scale: c.scale, zeroPoint: c.zero_point},
    };
    const got = toInputTensor(bytes(c.pixels), contract);
    assert.ok(got instanceof types[c.dtype]);
    assert.equal(diffCount(got, bytes(c.expected, types[c.dtype])), 0, `${c.channel_order} ${c.dtype}`);
  }
});

test("the released int8 input is the pixel minus 128", () => {
  const contract = readContract(SIDECAR, DETAILS);
  const rgb = Uint8Array.from({length: 32 * 32 * 3}, (_, i) => i % 256);
  const input = toInputTensor(rgb, contract);
  assert.ok(input instanceof Int8Array);
  assert.deepEqual(Array.from(input.slice(0, 4)), [-128, -127, -126, -125]);
  assert.equal(input[255], 127);
});

test("int8 output is de-quantised, then softmax, as NumPy does", () => {
  for (const c of casesOf("output")) {
    const contract = {outputQuantization: {scale: c.scale, zeroPoint: c.zero_point}, outputsProbabilities: false};
    const got = probabilities(Int8Array.from(c.q), contract);
    got.forEach((p, i) => assert.ok(Math.abs(p - c.expected[i]) < 1e-6, `${p} vs ${c.expected[i]}`));
  }
});

test("probabilities from a model that applies softmax itself are kept as they are", () => {
  const got = probabilities(Float32Array.from([0.25, 0.75]), {outputQuantization: null, outputsProbabilities: true});
  assert.deepEqual(Array.from(got), [0.25, 0.75]);
});

test("softmax sums to one and survives large logits", () => {
  const p = softmax([1000, 1001, 999]);
  assert.ok(Math.abs(p.reduce((a, b) => a + b, 0) - 1) < 1e-12);
  assert.ok(p[1] > p[0] && p[0] > p[2]);
});

test("topK sorts by probability, ties by index, and stops at the number of classes", () => {
  const top = topK([0.1, 0.4, 0.1, 0.4], ["a", "b", "c", "d"], 5);
  assert.deepEqual(top.map((t) => t.name), ["b", "d", "a", "c"]);
});

test("roundHalfEven rounds as Python's round()", () => {
  assert.deepEqual([0.5, 1.5, 2.5, -0.5, -1.5, 2.4999, 2.5001].map(roundHalfEven), [0, 2, 2, 0, -2, 2, 3]);
});

test("readContract reads the released sidecar", () => {
  const contract = readContract(SIDECAR, DETAILS);
  assert.equal(contract.height, 32);
  assert.equal(contract.resize, "stretch");
  assert.equal(contract.inputDtype, "int8");
  assert.deepEqual(contract.inputQuantization, {scale: 1, zeroPoint: -128});
  assert.deepEqual(contract.outputQuantization, {scale: 0.024168366566300392, zeroPoint: -59});
  assert.equal(contract.outputsProbabilities, false);
  const crop = readContract({...SIDECAR, crop_to_aspect_ratio: true});
  assert.equal(crop.resize, "crop");
});

test("readContract refuses a sidecar that does not describe its model, saying what differs", () => {
  const refused = (sidecar, details, pattern) =>
    assert.throws(() => readContract(sidecar, details), (e) => e instanceof SidecarError && pattern.test(e.message));
  refused({...SIDECAR, class_names: ["cat", "dog"]}, DETAILS, /names 2 classes but the model outputs 10/);
  refused({...SIDECAR, input_shape: [64, 64, 3]}, DETAILS, /input_shape \[64,64,3\] but the model takes \[1,32,32,3\]/);
  refused({...SIDECAR, input_quantization: null}, DETAILS, /no input_quantization/);
  refused({...SIDECAR, interpolation: "nearest"}, DETAILS, /interpolation "nearest"/);
  refused({...SIDECAR, crop_to_aspect_ratio: true, pad_to_aspect_ratio: true}, DETAILS, /both set/);
  refused({...SIDECAR, input_shape: [32, 32, 1]}, null, /3-channel/);
  refused({...SIDECAR, class_names: "cat"}, null, /class_names/);
  refused([], null, /not a JSON object/);
  const float = {inputs: [{dtype: "float32", shape: [1, 32, 32, 3]}], outputs: DETAILS.outputs};
  refused(SIDECAR, float, /input_dtype int8 but the model's input is float32/);
});

test("prepare: RGBA pixels of any size to the released model's input", () => {
  const contract = readContract(SIDECAR, DETAILS);
  const rgba = Uint8Array.from({length: 50 * 40 * 4}, (_, i) => (i % 4 === 3 ? 255 : 200));
  const {fitted, input} = prepare(rgba, 50, 40, contract);
  assert.equal(fitted.length, 32 * 32 * 3);
  assert.ok(fitted.every((v) => v === 200));
  assert.ok(input.every((v) => v === 72));
});
