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

  // Calls visit(inputOffset, kernelOffset, outputOffset) for every tap of the 3x3 stride-2
  // 'same' convolution of n images [size, size, cin] into cout channels: the offsets of the
  // input pixel's channels, of the tap's [cin, cout] matrix and of the output pixel's channels.
  function eachTap(n, size, cin, cout, visit) {
    const {out, before} = geometry(size);
    for (let b = 0; b < n; b++) {
      for (let oy = 0; oy < out; oy++) {
        for (let ox = 0; ox < out; ox++) {
          const o = ((b * out + oy) * out + ox) * cout;
          for (let ky = 0; ky < 3; ky++) {
            const iy = 2 * oy + ky - before;
            if (iy < 0 || iy >= size) continue;
            for (let kx = 0; kx < 3; kx++) {
              const ix = 2 * ox + kx - before;
              if (ix >= 0 && ix < size) visit(((b * size + iy) * size + ix) * cin, (ky * 3 + kx) * cin * cout, o);
            }
          }
        }
      }
    }
  }

  // The convolution of x {data, n, size, channels} with `kernel` (+ `bias`, or null) into cout channels.
  function convolve(x, kernel, bias, cout) {
    const {n, size, channels: cin} = x, out = geometry(size).out;
    const z = new Float64Array(n * out * out * cout);
    eachTap(n, size, cin, cout, (xi, ki, o) => {
      for (let ci = 0; ci < cin; ci++) {
        const v = x.data[xi + ci], k = ki + ci * cout;
        for (let co = 0; co < cout; co++) z[o + co] += v * kernel[k + co];
      }
    });
    const data = new Float32Array(z);
    if (bias) for (let j = 0; j < data.length; j++) data[j] += bias[j % cout];
    return {data, n, size: out, channels: cout};
  }

  // Gradients of the convolution of x with `kernel` given the output's gradient dz: the
  // kernel's, and the input's unless it is the images (`needInput` false).
  function convBackward(x, kernel, dz, cout, needInput) {
    const {n, size, channels: cin} = x;
    const dk = new Float64Array(kernel.length), dx = needInput ? new Float64Array(x.data.length) : null;
    eachTap(n, size, cin, cout, (xi, ki, o) => {
      for (let ci = 0; ci < cin; ci++) {
        const v = x.data[xi + ci], k = ki + ci * cout;
        let sum = 0;
        for (let co = 0; co < cout; co++) {
          dk[k + co] += v * dz[o + co];
          sum += kernel[k + co] * dz[o + co];
        }
        if (dx) dx[xi + ci] = sum + dx[xi + ci];
      }
    });
    return {dk: new Float32Array(dk), dx: dx && new Float32Array(dx)};
  }

  // Per-channel sums of a [rows, channels] array (of products with `times` if given).
  function channelSums(values, channels, times) {
    const sums = new Float64Array(channels);
    for (let j = 0; j < values.length; j++) sums[j % channels] += times ? values[j] * times[j] : values[j];
    return sums;
  }

  // ReLU of batch norm of z [rows, channels] with the batch's own statistics; keeps what
  // the gradient needs.
  function normRelu(z, channels, gamma, beta) {
    const rows = z.length / channels, mean = channelSums(z, channels).map((s) => s / rows);
    const normalized = new Float32Array(z.length), out = new Float32Array(z.length);
    for (let j = 0; j < z.length; j++) normalized[j] = z[j] - mean[j % channels];
    const scale = channelSums(normalized, channels, normalized).map((s) => 1 / Math.sqrt(s / rows + BN_EPSILON));
    for (let j = 0; j < z.length; j++) {
      const c = j % channels;
      normalized[j] *= scale[c];
      out[j] = Math.max(normalized[j] * gamma[c] + beta[c], 0);
    }
    return {out, normalized, scale};
  }

  // Gradients of normRelu's output `layer` given its gradient dout: [dz, dgamma, dbeta].
  function normReluBackward(layer, dout, gamma) {
    const {out, normalized, scale} = layer, channels = gamma.length, rows = out.length / channels;
    const dy = dout.map((g, j) => (out[j] > 0 ? g : 0));
    const dbeta = channelSums(dy, channels), dgamma = channelSums(dy, channels, normalized);
    const dz = new Float32Array(dy.length);
    for (let j = 0; j < dy.length; j++) {
      const c = j % channels;
      dz[j] = gamma[c] * scale[c] * (dy[j] - (dbeta[c] + normalized[j] * dgamma[c]) / rows);
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
      const conv = convBackward(layer.input, params[k], dz, cout, block > 0);
      grads[k] = conv.dk;
      dout = conv.dx;
    }
    return grads;
  }

  const logits = (model, params, images, n) => forward(model, params, images, n).logits;
  return {gradients, logits};
})();
