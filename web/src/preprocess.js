/**
 * The input and output contract of an exported model's JSON sidecar, in JavaScript: what
 * `mobilevit_utils/export.py` writes beside each `.tflite` file and docs/guide.md describes
 * ("What the `.json` is for"), applied as the Python side applies it
 * (`mobilevit_utils.data.read_image`, `models.Preprocessing`, `inference.TFLiteModel`):
 *
 *   1. fit the image to `input_shape` as training did: stretched (the default), centre-cropped
 *      (`crop_to_aspect_ratio`) or padded with black (`pad_to_aspect_ratio`), resampled with
 *      `interpolation` (bilinear) exactly as Pillow resamples, fixed-point rounding included;
 *   2. `preprocessing`: `channel_order` RGB or BGR, pixels 0-255 as floats, times `scale`
 *      (plus an optional `offset`) unless the model rescales them itself (`in_model`);
 *   3. an integer input (`input_dtype` int8/uint8) is quantised with `input_quantization`:
 *      q = clip(round(x / scale) + zero_point), rounding half to even, in float32, as NumPy;
 *   4. the output is de-quantised with `output_quantization`, then softmax unless the sidecar's
 *      `output` says the model gives probabilities already.
 *
 * Pure functions on typed arrays, no DOM and no LiteRT: the page (try.js) and the unit tests
 * (web/test/, `node --test`) use the same code.
 */

export class SidecarError extends Error {
  constructor(message) {
    super(message);
    this.name = "SidecarError";
  }
}

// ---------------------------------------------------------------------------------------------
// The contract

const INTEGER_RANGES = {int8: [-128, 127], uint8: [0, 255]};
const DTYPES = ["float32", ...Object.keys(INTEGER_RANGES)];

function fail(message) {
  throw new SidecarError(`${message}; fix the sidecar (.json), or export the model again.`);
}

function quantization(sidecar, key, dtype) {
  if (!(dtype in INTEGER_RANGES)) return null;
  const q = sidecar[key];
  if (!q || typeof q.scale !== "number" || !(q.scale > 0) || !Number.isInteger(q.zero_point)) {
    fail(`the model's ${key.split("_")[0]} is ${dtype}, and the sidecar gives no ${key} {scale, zero_point}`);
  }
  return {scale: q.scale, zeroPoint: q.zero_point};
}

/**
 * The contract of `sidecar` (the parsed .json), checked, with everything the page needs. With
 * `model` ({inputs, outputs}: LiteRT.js's getInputDetails() / getOutputDetails(), each
 * {dtype, shape}), it is also checked against the model itself, whose tensor types win.
 */
export function readContract(sidecar, model = null) {
  if (!sidecar || typeof sidecar !== "object" || Array.isArray(sidecar)) {
    fail("the sidecar is not a JSON object");
  }
  const names = sidecar.class_names;
  if (!Array.isArray(names) || names.length === 0 || !names.every((n) => typeof n === "string")) {
    fail("class_names must be a list of the class names, one per output");
  }
  const shape = sidecar.input_shape;
  if (!Array.isArray(shape) || shape.length !== 3 || !shape.every((d) => Number.isInteger(d) && d > 0)) {
    fail(`input_shape must be [height, width, channels], got ${JSON.stringify(shape)}`);
  }
  if (shape[2] !== 3) fail(`input_shape ${JSON.stringify(shape)}: only 3-channel (colour) inputs are supported`);
  const pre = sidecar.preprocessing ?? {};
  const channelOrder = pre.channel_order ?? "RGB";
  if (channelOrder !== "RGB" && channelOrder !== "BGR") {
    fail(`preprocessing.channel_order must be RGB or BGR, got ${JSON.stringify(channelOrder)}`);
  }
  const inModel = pre.in_model ?? true;
  const scale = pre.scale ?? 1 / 255;
  const offset = pre.offset ?? 0;
  if (typeof inModel !== "boolean" || typeof scale !== "number" || typeof offset !== "number") {
    fail("preprocessing needs in_model (true or false), scale and offset (numbers)");
  }
  if (sidecar.crop_to_aspect_ratio && sidecar.pad_to_aspect_ratio) {
    fail("crop_to_aspect_ratio and pad_to_aspect_ratio are both set: choose one");
  }
  const interpolation = sidecar.interpolation ?? "bilinear";
  if (!(interpolation in FILTERS)) {
    fail(`interpolation ${JSON.stringify(interpolation)} is not one of ${Object.keys(FILTERS).join(", ")}`);
  }
  let inputDtype = sidecar.input_dtype ?? "float32";
  let outputDtype = sidecar.output_quantization ? "int8" : "float32";
  if (model) {
    const [input, ...moreInputs] = model.inputs;
    const [output, ...moreOutputs] = model.outputs;
    if (!input || moreInputs.length || !output || moreOutputs.length) {
      fail(`the model has ${model.inputs.length} inputs and ${model.outputs.length} outputs, not one image in and one score per class out`);
    }
    const want = [1, ...shape];
    const got = Array.from(input.shape);
    if (got.length !== 4 || got.some((d, i) => d !== want[i] && !(i === 0 && d === -1))) {
      fail(`the sidecar gives input_shape ${JSON.stringify(shape)} but the model takes ${JSON.stringify(got)}`);
    }
    const outputs = Array.from(output.shape).at(-1);
    if (outputs !== names.length) {
      fail(`the sidecar names ${names.length} classes but the model outputs ${outputs} scores`);
    }
    if (sidecar.input_dtype && sidecar.input_dtype !== input.dtype) {
      fail(`the sidecar gives input_dtype ${sidecar.input_dtype} but the model's input is ${input.dtype}`);
    }
    inputDtype = input.dtype;
    outputDtype = output.dtype;
  }
  if (!DTYPES.includes(inputDtype)) fail(`input_dtype ${inputDtype} is not one of ${DTYPES.join(", ")}`);
  if (!DTYPES.includes(outputDtype)) fail(`the output's type ${outputDtype} is not one of ${DTYPES.join(", ")}`);
  return {
    name: sidecar.name ?? null,
    precision: sidecar.precision ?? null,
    classNames: names,
    height: shape[0],
    width: shape[1],
    resize: sidecar.crop_to_aspect_ratio ? "crop" : sidecar.pad_to_aspect_ratio ? "pad" : "stretch",
    interpolation,
    channelOrder,
    inModel,
    scale,
    offset,
    inputDtype,
    inputQuantization: quantization(sidecar, "input_quantization", inputDtype),
    outputDtype,
    outputQuantization: quantization(sidecar, "output_quantization", outputDtype),
    outputsProbabilities: String(sidecar.output ?? "logits").startsWith("probabilities"),
    modelCard: sidecar.model_card ?? null,
  };
}

// ---------------------------------------------------------------------------------------------
// Resampling, as Pillow's Image.resize (libImaging/Resample.c): separable convolution with the
// filter stretched over the scale when shrinking (so every source pixel counts: antialiased),
// 8-bit fixed-point coefficients, horizontal pass first.

const PRECISION_BITS = 32 - 8 - 2;
const ONE = 2 ** PRECISION_BITS;
const HALF = 2 ** (PRECISION_BITS - 1);

function sinc(x) {
  if (x === 0) return 1;
  x *= Math.PI;
  return Math.sin(x) / x;
}

export const FILTERS = {
  box: {support: 0.5, weight: (x) => (x > -0.5 && x <= 0.5 ? 1 : 0)},
  bilinear: {support: 1, weight: (x) => ((x = Math.abs(x)) < 1 ? 1 - x : 0)},
  hamming: {
    support: 1,
    weight(x) {
      x = Math.abs(x);
      if (x === 0) return 1;
      if (x >= 1) return 0;
      x *= Math.PI;
      return (Math.sin(x) / x) * (0.54 + 0.46 * Math.cos(x));
    },
  },
  bicubic: {
    support: 2,
    weight(x) {
      const a = -0.5;
      x = Math.abs(x);
      if (x < 1) return ((a + 2) * x - (a + 3)) * x * x + 1;
      if (x < 2) return (((x - 5) * x + 8) * x - 4) * a;
      return 0;
    },
  },
  lanczos: {support: 3, weight: (x) => (x >= -3 && x < 3 ? sinc(x) * sinc(x / 3) : 0)},
};

/** Pillow's precompute_coeffs + normalize_coeffs_8bpc for one axis. */
function coefficients(inSize, in0, in1, outSize, filter) {
  const scale = (in1 - in0) / outSize;
  const filterscale = Math.max(scale, 1);
  const support = filter.support * filterscale;
  const ksize = Math.ceil(support) * 2 + 1;
  const bounds = new Int32Array(outSize * 2);
  const kk = new Int32Array(outSize * ksize);
  const k = new Float64Array(ksize);
  const ss = 1 / filterscale;
  for (let xx = 0; xx < outSize; xx++) {
    const center = in0 + (xx + 0.5) * scale;
    const xmin = Math.max(Math.trunc(center - support + 0.5), 0);
    const xmax = Math.min(Math.trunc(center + support + 0.5), inSize) - xmin;
    let ww = 0;
    for (let x = 0; x < xmax; x++) {
      k[x] = filter.weight((x + xmin - center + 0.5) * ss);
      ww += k[x];
    }
    for (let x = 0; x < xmax; x++) {
      const w = ww !== 0 ? k[x] / ww : k[x];
      kk[xx * ksize + x] = w < 0 ? Math.trunc(-0.5 + w * ONE) : Math.trunc(0.5 + w * ONE);
    }
    bounds[xx * 2] = xmin;
    bounds[xx * 2 + 1] = xmax;
  }
  return {ksize, bounds, kk};
}

function clip8(sum) {
  const v = Math.floor(sum / ONE);
  return v < 0 ? 0 : v > 255 ? 255 : v;
}

/**
 * `rgb` (Uint8Array, height x width x 3) resized to outWidth x outHeight from the source window
 * `box` [left, top, right, bottom] (default the whole image), as Pillow's
 * `image.resize((outWidth, outHeight), filter, box)`.
 */
export function resize(rgb, width, height, outWidth, outHeight, interpolation = "bilinear", box = null) {
  const filter = FILTERS[interpolation];
  if (!filter) throw new Error(`unknown interpolation ${interpolation}`);
  box = box ?? [0, 0, width, height];
  if (outWidth === width && outHeight === height && box[0] === 0 && box[1] === 0 && box[2] === width && box[3] === height) {
    return rgb.slice();
  }
  const needH = outWidth !== width || box[0] !== 0 || box[2] !== outWidth;
  const needV = outHeight !== height || box[1] !== 0 || box[3] !== outHeight;
  const h = coefficients(width, box[0], box[2], outWidth, filter);
  const v = coefficients(height, box[1], box[3], outHeight, filter);
  let source = rgb;
  let sourceWidth = width;
  if (needH) {
    // Only the rows the vertical pass reads.
    const first = v.bounds[0];
    const last = v.bounds[outHeight * 2 - 2] + v.bounds[outHeight * 2 - 1];
    for (let y = 0; y < outHeight; y++) v.bounds[y * 2] -= first;
    source = new Uint8Array(outWidth * (last - first) * 3);
    for (let y = first; y < last; y++) {
      const row = y * width * 3;
      const out = (y - first) * outWidth * 3;
      for (let xx = 0; xx < outWidth; xx++) {
        const xmin = h.bounds[xx * 2];
        const xmax = h.bounds[xx * 2 + 1];
        const kBase = xx * h.ksize;
        for (let c = 0; c < 3; c++) {
          let sum = HALF;
          for (let x = 0; x < xmax; x++) sum += rgb[row + (xmin + x) * 3 + c] * h.kk[kBase + x];
          source[out + xx * 3 + c] = clip8(sum);
        }
      }
    }
    sourceWidth = outWidth;
  }
  if (!needV) return source;
  const result = new Uint8Array(outWidth * outHeight * 3);
  const stride = sourceWidth * 3;
  for (let yy = 0; yy < outHeight; yy++) {
    const ymin = v.bounds[yy * 2];
    const ymax = v.bounds[yy * 2 + 1];
    const kBase = yy * v.ksize;
    for (let i = 0; i < stride; i++) {
      let sum = HALF;
      for (let y = 0; y < ymax; y++) sum += source[(ymin + y) * stride + i] * v.kk[kBase + y];
      result[yy * stride + i] = clip8(sum);
    }
  }
  return result;
}

/** Python's round(): to the nearest integer, halves to the even one. */
export function roundHalfEven(x) {
  const floor = Math.floor(x);
  const diff = x - floor;
  if (diff > 0.5) return floor + 1;
  if (diff < 0.5) return floor;
  return floor % 2 === 0 ? floor : floor + 1;
}

/**
 * `rgb` (width x height) fitted to the model's input as `mobilevit_utils.data.resize_image` fits
 * it: stretched, the largest centred window of the input's proportions, or the whole image
 * between black bars. Returns a Uint8Array of contract.height x contract.width x 3.
 */
export function fitToInput(rgb, width, height, contract) {
  const {width: outW, height: outH, interpolation} = contract;
  if (width === outW && height === outH) return rgb.slice();
  if (contract.resize === "crop") {
    const cropH = Math.min(height, Math.trunc((width * outH) / outW));
    const cropW = Math.min(width, Math.trunc((height * outW) / outH));
    const top = Math.floor((height - cropH) / 2);
    const left = Math.floor((width - cropW) / 2);
    return resize(rgb, width, height, outW, outH, interpolation, [left, top, left + cropW, top + cropH]);
  }
  if (contract.resize === "pad") {
    const scale = Math.min(outW / width, outH / height);
    const innerW = Math.max(1, roundHalfEven(width * scale));
    const innerH = Math.max(1, roundHalfEven(height * scale));
    const inner = resize(rgb, width, height, innerW, innerH, interpolation);
    const out = new Uint8Array(outW * outH * 3); // black bars
    const left = Math.floor((outW - innerW) / 2);
    const top = Math.floor((outH - innerH) / 2);
    for (let y = 0; y < innerH; y++) {
      out.set(inner.subarray(y * innerW * 3, (y + 1) * innerW * 3), ((top + y) * outW + left) * 3);
    }
    return out;
  }
  return resize(rgb, width, height, outW, outH, interpolation);
}

// ---------------------------------------------------------------------------------------------
// Pixels in, scores out

/**
 * RGBA pixels (a canvas's ImageData.data) to RGB, transparent pixels composited on white as
 * `mobilevit_utils.data.to_rgb` does (Pillow's alpha_composite over an opaque white image).
 */
export function rgbaToRgb(rgba) {
  const n = rgba.length / 4;
  const rgb = new Uint8Array(n * 3);
  const PB = 7;
  for (let i = 0; i < n; i++) {
    const a = rgba[i * 4 + 3];
    for (let c = 0; c < 3; c++) {
      const src = rgba[i * 4 + c];
      if (a === 255) rgb[i * 3 + c] = src;
      else if (a === 0) rgb[i * 3 + c] = 255;
      else {
        const outa255 = a * 255 + 255 * (255 - a);
        const coef1 = Math.floor((a * 255 * 255 * 2 ** PB) / outa255);
        const coef2 = 255 * 2 ** PB - coef1;
        const tmp = src * coef1 + 255 * coef2 + (0x80 << PB);
        rgb[i * 3 + c] = Math.floor((Math.floor(tmp / 256) + tmp) / 256) >> PB;
      }
    }
  }
  return rgb;
}

/**
 * The model's input tensor data for `rgb`, already fitted (contract.height x contract.width x 3):
 * channel order, scaling, and quantisation for an integer input. A Float32Array, Int8Array or
 * Uint8Array in NHWC order (batch 1).
 */
export function toInputTensor(rgb, contract) {
  const n = contract.height * contract.width;
  const bgr = contract.channelOrder === "BGR";
  const scale = Math.fround(contract.scale);
  const offset = Math.fround(contract.offset);
  const values = new Float32Array(n * 3);
  for (let i = 0; i < n; i++) {
    for (let c = 0; c < 3; c++) {
      const pixel = rgb[i * 3 + (bgr ? 2 - c : c)];
      values[i * 3 + c] = contract.inModel ? pixel : Math.fround(pixel * scale) + offset;
    }
  }
  if (contract.inputDtype === "float32") return values;
  const [lo, hi] = INTEGER_RANGES[contract.inputDtype];
  const qScale = Math.fround(contract.inputQuantization.scale);
  const zeroPoint = contract.inputQuantization.zeroPoint;
  const out = contract.inputDtype === "int8" ? new Int8Array(n * 3) : new Uint8Array(n * 3);
  for (let i = 0; i < values.length; i++) {
    const q = roundHalfEven(Math.fround(values[i] / qScale)) + zeroPoint;
    out[i] = q < lo ? lo : q > hi ? hi : q;
  }
  return out;
}

/** Softmax, in float64, the largest logit subtracted first. */
export function softmax(logits) {
  let max = -Infinity;
  for (const v of logits) max = Math.max(max, v);
  const exp = Float64Array.from(logits, (v) => Math.exp(v - max));
  const sum = exp.reduce((a, b) => a + b, 0);
  return exp.map((v) => v / sum);
}

/** The class probabilities from the model's raw output (de-quantised, softmax if logits). */
export function probabilities(output, contract) {
  let scores = Float64Array.from(output);
  if (contract.outputQuantization) {
    const {scale, zeroPoint} = contract.outputQuantization;
    const s = Math.fround(scale);
    scores = scores.map((q) => Math.fround((q - zeroPoint) * s));
  }
  return contract.outputsProbabilities ? scores : softmax(scores);
}

/** The `k` likeliest classes, most probable first (ties: the lower index first). */
export function topK(probs, classNames, k = 5) {
  return Array.from(probs, (probability, index) => ({index, name: classNames[index], probability}))
    .sort((a, b) => b.probability - a.probability || a.index - b.index)
    .slice(0, Math.min(k, probs.length));
}

/** Everything between decoded RGBA pixels and the input tensor, for one image. */
export function prepare(rgba, width, height, contract) {
  const fitted = fitToInput(rgbaToRgb(rgba), width, height, contract);
  return {fitted, input: toInputTensor(fitted, contract)};
}
