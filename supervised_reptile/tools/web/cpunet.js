// The network computed on plain float32 arrays: the worker's CPU engine (worker.js is
// appended to this source). TensorFlow.js's CPU backend spends most of an answer in its
// fixed cost per kernel (some 1,600 kernels for the web-demo model); these loops have none.
//
// The network is the package's (supervised_reptile/models.py), laid out as Keras stores it
// (NHWC images, kernels [3, 3, in, out], dense kernel [features, ways]): 4 x [conv 3x3 stride
// 2 'same' (+ bias); batch norm with the batch's own statistics; ReLU], flatten, dense. The
// loss is the sum over the mini-batch of the softmax cross-entropies. Sums run in double
// precision and every layer's output is stored in float32, as TensorFlow stores it.
'use strict';

const BN_EPSILON = 1e-3;  // batch norm's epsilon (Keras's default, as models.py builds it)
const IMAGE_SIZE = 28;

const plainNet = (() => {
  // Output size of a 3x3 stride-2 'same' convolution and its padding before the first
  // row and column (TensorFlow puts the odd pixel of padding after).
  function geometry(size) {
    const out = Math.ceil(size / 2);
    return {out, before: Math.floor(Math.max(2 * (out - 1) + 3 - size, 0) / 2)};
  }

  // The taps of the 3x3 stride-2 'same' convolution of n images [size, size, cin] into cout
  // channels, as triples (input offset, kernel offset, output offset) in an Int32Array: the
  // offsets of the input pixel's channels, of the tap's [cin, cout] matrix and of the output
  // pixel's channels, ordered by output pixel, then kernel row, then kernel column. The
  // convolutions below walk this list instead of recomputing the geometry at every tap.
  function tapList(n, size, cin, cout) {
    const {out, before} = geometry(size), list = [];
    for (let b = 0; b < n; b++) {
      for (let oy = 0; oy < out; oy++) {
        for (let ox = 0; ox < out; ox++) {
          const o = ((b * out + oy) * out + ox) * cout;
          for (let ky = 0; ky < 3; ky++) {
            const iy = 2 * oy + ky - before;
            if (iy < 0 || iy >= size) continue;
            for (let kx = 0; kx < 3; kx++) {
              const ix = 2 * ox + kx - before;
              if (ix >= 0 && ix < size) list.push(((b * size + iy) * size + ix) * cin, (ky * 3 + kx) * cin * cout, o);
            }
          }
        }
      }
    }
    return Int32Array.from(list);
  }

  // tapList's lists, built once per layer shape (a fine-tuning reuses the same few shapes).
  const tapLists = new Map();
  function taps(n, size, cin, cout) {
    const key = `${n},${size},${cin},${cout}`;
    if (!tapLists.has(key)) tapLists.set(key, tapList(n, size, cin, cout));
    return tapLists.get(key);
  }

  // Whether every value is finite. Then a zero input adds exactly nothing to a sum of
  // products (0 * k is a zero, and sums start at +0, so adding it changes no bit), and the
  // loops below skip it: ReLU makes about half of each layer's inputs zero.
  function allFinite(values) {
    for (let j = 0; j < values.length; j++) if (!Number.isFinite(values[j])) return false;
    return true;
  }

  // Writes into `channels` the input channels of the pixel at `offset` whose value counts
  // (all of them, or with `skipZeros` the nonzero ones) and returns how many there are.
  function countedChannels(input, offset, cin, skipZeros, channels) {
    let count = 0;
    for (let ci = 0; ci < cin; ci++) if (!skipZeros || input[offset + ci] !== 0) channels[count++] = ci;
    return count;
  }

  // sums[s + co] += input[xi + ci] * matrix[m + ci * cout + co] for the `count` channels ci
  // (in order) and every co < cout, in double precision. Four channels a pass, each sum still
  // adding one product at a time, in the same order: a quarter of the loads and stores of the sums.
  function addProducts(sums, s, input, xi, matrix, m, cout, channels, count) {
    let j = 0;
    for (; j + 3 < count; j += 4) {
      const v0 = input[xi + channels[j]], v1 = input[xi + channels[j + 1]];
      const v2 = input[xi + channels[j + 2]], v3 = input[xi + channels[j + 3]];
      const m0 = m + channels[j] * cout, m1 = m + channels[j + 1] * cout;
      const m2 = m + channels[j + 2] * cout, m3 = m + channels[j + 3] * cout;
      for (let co = 0; co < cout; co++) {
        sums[s + co] = sums[s + co] + v0 * matrix[m0 + co] + v1 * matrix[m1 + co] + v2 * matrix[m2 + co] + v3 * matrix[m3 + co];
      }
    }
    for (; j < count; j++) {
      const v = input[xi + channels[j]], m0 = m + channels[j] * cout;
      for (let co = 0; co < cout; co++) sums[s + co] += v * matrix[m0 + co];
    }
  }

  // dk[k + ci * cout + co] += input[xi + ci] * dz[o + co] for the `count` channels ci and
  // every co < cout, in double precision. Two channels a pass, sharing their loads of dz.
  function addOuterProduct(dk, k, input, xi, dz, o, cout, channels, count) {
    let j = 0;
    for (; j + 1 < count; j += 2) {
      const v0 = input[xi + channels[j]], v1 = input[xi + channels[j + 1]];
      const k0 = k + channels[j] * cout, k1 = k + channels[j + 1] * cout;
      for (let co = 0; co < cout; co++) {
        const g = dz[o + co];
        dk[k0 + co] += v0 * g;
        dk[k1 + co] += v1 * g;
      }
    }
    if (j < count) {
      const v = input[xi + channels[j]], k0 = k + channels[j] * cout;
      for (let co = 0; co < cout; co++) dk[k0 + co] += v * dz[o + co];
    }
  }

  // The convolution of x {data, n, size, channels} with `kernel` (+ `bias`, or null) into cout
  // channels. Each output's sum runs over its taps in order, and within a tap over the input
  // channels in order.
  function convolve(x, kernel, bias, cout) {
    const {data: input, n, size, channels: cin} = x, out = geometry(size).out, list = taps(n, size, cin, cout);
    const z = new Float64Array(n * out * out * cout), skipZeros = allFinite(kernel), channels = new Int32Array(cin);
    for (let t = 0; t < list.length; t += 3) {
      const count = countedChannels(input, list[t], cin, skipZeros, channels);
      addProducts(z, list[t + 2], input, list[t], kernel, list[t + 1], cout, channels, count);
    }
    const data = new Float32Array(z);
    if (bias) for (let j = 0; j < data.length; j += cout) for (let co = 0; co < cout; co++) data[j + co] += bias[co];
    return {data, n, size: out, channels: cout};
  }

  // The kernel's gradient of the convolution of x given the output's gradient dz: for each
  // weight, the sum over the taps in order.
  function kernelGradient(x, dz, cout) {
    const {data: input, n, size, channels: cin} = x, list = taps(n, size, cin, cout);
    const dk = new Float64Array(9 * cin * cout), skipZeros = allFinite(dz), channels = new Int32Array(cin);
    for (let t = 0; t < list.length; t += 3) {
      const count = countedChannels(input, list[t], cin, skipZeros, channels);
      addOuterProduct(dk, list[t + 1], input, list[t], dz, list[t + 2], cout, channels, count);
    }
    return new Float32Array(dk);
  }

  // dx[xi + ci] += (the sum over co < cout of kernel[k + ci * cout + co] * dz[o + co]) for the
  // `count` channels ci, in double precision. Four channels a pass, whose sums run side by side.
  function addDotProducts(dx, xi, kernel, k, dz, o, cout, channels, count) {
    let j = 0;
    for (; j + 3 < count; j += 4) {
      const k0 = k + channels[j] * cout, k1 = k + channels[j + 1] * cout;
      const k2 = k + channels[j + 2] * cout, k3 = k + channels[j + 3] * cout;
      let s0 = 0, s1 = 0, s2 = 0, s3 = 0;
      for (let co = 0; co < cout; co++) {
        const g = dz[o + co];
        s0 += kernel[k0 + co] * g; s1 += kernel[k1 + co] * g; s2 += kernel[k2 + co] * g; s3 += kernel[k3 + co] * g;
      }
      dx[xi + channels[j]] = s0 + dx[xi + channels[j]];
      dx[xi + channels[j + 1]] = s1 + dx[xi + channels[j + 1]];
      dx[xi + channels[j + 2]] = s2 + dx[xi + channels[j + 2]];
      dx[xi + channels[j + 3]] = s3 + dx[xi + channels[j + 3]];
    }
    for (; j < count; j++) {
      const k0 = k + channels[j] * cout;
      let sum = 0;
      for (let co = 0; co < cout; co++) sum += kernel[k0 + co] * dz[o + co];
      dx[xi + channels[j]] = sum + dx[xi + channels[j]];
    }
  }

  // The input's gradient of the convolution of x (the previous block's ReLU output) with
  // `kernel` given the output's gradient dz: for each input value, the sum over its taps in
  // order of each tap's sum over the output channels in order. Only where the input is not
  // zero: elsewhere that ReLU passes no gradient back (normReluBackward drops these values),
  // so they stay 0.
  function inputGradient(x, kernel, dz, cout) {
    const {data: input, n, size, channels: cin} = x, list = taps(n, size, cin, cout);
    const dx = new Float64Array(input.length), channels = new Int32Array(cin);
    for (let t = 0; t < list.length; t += 3) {
      const count = countedChannels(input, list[t], cin, true, channels);
      addDotProducts(dx, list[t], kernel, list[t + 1], dz, list[t + 2], cout, channels, count);
    }
    return new Float32Array(dx);
  }

  // Per-channel sums of a [rows, channels] array (of products with `times` if given), row by row.
  function channelSums(values, channels, times) {
    const sums = new Float64Array(channels);
    for (let j = 0; j < values.length; j += channels) {
      for (let c = 0; c < channels; c++) sums[c] += times ? values[j + c] * times[j + c] : values[j + c];
    }
    return sums;
  }

  // ReLU of batch norm of z [rows, channels] with the batch's own statistics; keeps what
  // the gradient needs.
  function normRelu(z, channels, gamma, beta) {
    const rows = z.length / channels, mean = channelSums(z, channels).map((s) => s / rows);
    const normalized = new Float32Array(z.length), out = new Float32Array(z.length);
    for (let j = 0; j < z.length; j += channels) {
      for (let c = 0; c < channels; c++) normalized[j + c] = z[j + c] - mean[c];
    }
    const scale = channelSums(normalized, channels, normalized).map((s) => 1 / Math.sqrt(s / rows + BN_EPSILON));
    for (let j = 0; j < z.length; j += channels) {
      for (let c = 0; c < channels; c++) {
        normalized[j + c] *= scale[c];
        out[j + c] = Math.max(normalized[j + c] * gamma[c] + beta[c], 0);
      }
    }
    return {out, normalized, scale};
  }

  // Gradients of normRelu's output `layer` given its gradient dout: [dz, dgamma, dbeta].
  function normReluBackward(layer, dout, gamma) {
    const {out, normalized, scale} = layer, channels = gamma.length, rows = out.length / channels;
    const dy = new Float32Array(dout.length);
    for (let j = 0; j < dy.length; j++) dy[j] = out[j] > 0 ? dout[j] : 0;
    const dbeta = channelSums(dy, channels), dgamma = channelSums(dy, channels, normalized);
    const dz = new Float32Array(dy.length);
    for (let j = 0; j < dy.length; j += channels) {
      for (let c = 0; c < channels; c++) {
        dz[j + c] = gamma[c] * scale[c] * (dy[j + c] - (dbeta[c] + normalized[j + c] * dgamma[c]) / rows);
      }
    }
    return [dz, new Float32Array(dgamma), new Float32Array(dbeta)];
  }

  // Logits [n, ways] of the dense layer on features [n, inputs].
  function dense(features, n, kernel, bias) {
    const ways = bias.length, inputs = features.length / n, logits = new Float32Array(n * ways);
    for (let b = 0; b < n; b++) {
      for (let w = 0; w < ways; w++) {
        let sum = 0;
        for (let i = 0; i < inputs; i++) sum += features[b * inputs + i] * kernel[i * ways + w];
        logits[b * ways + w] = sum + bias[w];
      }
    }
    return logits;
  }

  // The network on n images [n, 28, 28]: logits and every block's input and batch norm.
  function forward(model, params, images, n) {
    let x = {data: images, n, size: IMAGE_SIZE, channels: 1}, i = 0;
    const blocks = [];
    for (let block = 0; block < 4; block++) {
      const kernelIndex = i, cout = model.shapes[i][3], kernel = params[i++];
      const z = convolve(x, kernel, model.rule.conv_bias ? params[i++] : null, cout);
      const norm = normRelu(z.data, cout, params[i], params[i + 1]);
      blocks.push({input: x, kernelIndex, normIndex: i, ...norm});
      x = {data: norm.out, n, size: z.size, channels: cout};
      i += 2;
    }
    return {blocks, features: x.data, denseIndex: i, logits: dense(x.data, n, params[i], params[i + 1])};
  }

  // d loss / d logits of the summed softmax cross-entropy: softmax minus the one-hot labels.
  function lossGradient(logits, labels) {
    const ways = logits.length / labels.length, grad = new Float32Array(logits.length);
    labels.forEach((label, b) => {
      const row = logits.subarray(b * ways, (b + 1) * ways), top = Math.max(...row);
      const exps = Array.from(row, (x) => Math.exp(x - top)), total = exps.reduce((s, e) => s + e, 0);
      exps.forEach((e, w) => { grad[b * ways + w] = e / total - (w === label ? 1 : 0); });
    });
    return grad;
  }

  // The dense layer's gradients [dkernel, dbias, dfeatures] given d loss / d logits.
  function denseBackward(features, kernel, dlogits, n) {
    const ways = dlogits.length / n, inputs = features.length / n;
    const dkernel = new Float32Array(kernel.length), dfeatures = new Float32Array(features.length);
    for (let i = 0; i < inputs; i++) {
      for (let w = 0; w < ways; w++) {
        let sum = 0;
        for (let b = 0; b < n; b++) sum += features[b * inputs + i] * dlogits[b * ways + w];
        dkernel[i * ways + w] = sum;
      }
      for (let b = 0; b < n; b++) {
        let sum = 0;
        for (let w = 0; w < ways; w++) sum += kernel[i * ways + w] * dlogits[b * ways + w];
        dfeatures[b * inputs + i] = sum;
      }
    }
    return [dkernel, new Float32Array(channelSums(dlogits, ways)), dfeatures];
  }

  // Gradients (Float32Arrays, in the order of `params`) of the loss on `images` with `labels`.
  function gradients(model, params, images, labels) {
    const n = labels.length, net = forward(model, params, images, n), grads = new Array(params.length);
    const d = denseBackward(net.features, params[net.denseIndex], lossGradient(net.logits, labels), n);
    [grads[net.denseIndex], grads[net.denseIndex + 1]] = d;
    let dout = d[2];
    for (let block = 3; block >= 0; block--) {
      const layer = net.blocks[block], k = layer.kernelIndex, cout = model.shapes[k][3];
      const [dz, dgamma, dbeta] = normReluBackward(layer, dout, params[layer.normIndex]);
      [grads[layer.normIndex], grads[layer.normIndex + 1]] = [dgamma, dbeta];
      if (model.rule.conv_bias) grads[k + 1] = new Float32Array(channelSums(dz, cout));
      grads[k] = kernelGradient(layer.input, dz, cout);
      if (block > 0) dout = inputGradient(layer.input, params[k], dz, cout);  // not the images'

    }
    return grads;
  }

  const logits = (model, params, images, n) => forward(model, params, images, n).logits;
  return {gradients, logits};
})();
