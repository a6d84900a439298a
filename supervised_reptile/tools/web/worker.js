// The demo's fine-tuning engine, run in a Web Worker (TensorFlow.js and cpunet.js are
// prepended to this source; see page.js). It keeps the exported model and answers one job at a time:
//
//   {type: 'init', model, backend}  -> {type: 'ready', backend}
//   {type: 'classify', images}      -> {type: 'answer', probs, ms}   (or {type: 'error', message})
//
// `images` is a Float32Array of (ways + 1) 28x28 images, 1 = background: the support
// images in class order, then the query. The network, loss and update rules are the
// package's (supervised_reptile/models.py, reptile.py, optimizers.py): 4 x [conv 3x3
// stride 2 'same' (+ bias); batch norm with the batch's own statistics (epsilon 1e-3);
// ReLU], flatten, dense; the loss is the sum over the mini-batch of the softmax
// cross-entropies; each step updates every weight with the model's rule on the exported
// mini-batches; the query is classified in a batch of the support images plus the query.
//
// On the CPU, cpunet.js's loops over float32 arrays compute the network and its gradients
// (`plainNet`); with WebGL, TensorFlow.js does (`tfNet`, below). Three parts of tfNet are
// written out here because TensorFlow.js runs them slowly (measured per kernel with
// tf.profile on the web-demo model): the convolution's filter gradient, and batch norm with
// ReLU (few kernels instead of TensorFlow.js's many). The optimizer update runs as one loop
// over plain float32 arrays for both engines.
'use strict';

const f32 = Math.fround;  // float32 arithmetic, as TensorFlow's update kernels compute
let model = null;  // {rule, shapes, net, params: [Float32Array], slots: [Float32Array]} once initialized

self.onmessage = async (event) => {
  const job = event.data;
  try {
    if (job.type === 'init') {
      const wanted = job.backend || (await webglWorks() ? 'webgl' : 'cpu');
      const backend = wanted !== 'cpu' && await tf.setBackend(wanted) ? tf.getBackend() : 'cpu';
      model = load(job.model, backend === 'cpu' ? plainNet : tfNet);
      self.postMessage({type: 'ready', backend});
    } else {
      const start = performance.now();
      const probs = classify(job.images);
      self.postMessage({type: 'answer', probs, ms: performance.now() - start});
    }
  } catch (err) {
    self.postMessage({type: 'error', message: String(err && err.message || err)});
  }
};

// Whether WebGL runs here on a GPU. Browsers without one either have no WebGL or emulate
// it in software (SwiftShader, llvmpipe), where the CPU engine is faster.
async function webglWorks() {
  try {
    if (!(await tf.setBackend('webgl'))) return false;
    const gl = tf.backend().gpgpu.gl, info = gl.getExtension('WEBGL_debug_renderer_info');
    return !/swiftshader|llvmpipe|software/i.test(info ? gl.getParameter(info.UNMASKED_RENDERER_WEBGL) : '');
  } catch (err) {
    return false;
  }
}

// The weights, then (but for SGD) their second moments, from the export's float32 buffer;
// `net` computes the network (plainNet or tfNet).
function load({rule, shapes, buffer}, net) {
  const values = new Float32Array(buffer);
  const sizes = shapes.map((shape) => shape.reduce((a, b) => a * b, 1));
  let offset = 0;
  const take = (size) => values.slice(offset, (offset += size));
  const params = sizes.map(take);
  return {rule, shapes, net, params, slots: rule.optimizer === 'sgd' ? [] : sizes.map(take)};
}

// Logits [n, ways] of the network with weights `params` (tensors) on images [n, 28, 28].
function logits(params, images) {
  const [n, size] = images.shape;
  let out = images.reshape([n, size, size, 1]);
  let i = 0;
  for (let block = 0; block < 4; block++) {
    out = (block ? conv : firstConv)(out, params[i++]);
    const shape = out.shape;
    let columns = out.reshape([-1, shape[3]]);
    if (model.rule.conv_bias) columns = tf.add(columns, rowsOf(params[i++], columns.shape[0]));
    out = normRelu(columns, params[i], params[i + 1]).reshape(shape);
    i += 2;
  }
  return tf.add(tf.matMul(out.reshape([n, -1]), params[i]), params[i + 1]);
}

// Convolution 3x3, stride 2, 'same' padding (TensorFlow's kernels), with the filter
// gradient as a dilated convolution (TensorFlow.js's own filter-gradient kernel took 2/3
// of a step).
// The first layer's input gradient (the images') is never used: zeros, not a convolution.
const convolution = (inputGradient) => tf.customGrad((x, kernel, save) => {
  save([x, kernel]);
  return {value: tf.conv2d(x, kernel, 2, 'same'), gradFunc: (dy, [x, kernel]) => [
    inputGradient ? tf.conv2dTranspose(dy, kernel, x.shape, 2, 'same') : tf.zerosLike(x), filterGradient(x, dy)]};
});
const firstConv = convolution(false), conv = convolution(true);

// d loss / d kernel [3, 3, in, out] of a stride-2 'same' convolution of x with output gradient dy.
function filterGradient(x, dy) {
  const size = x.shape[1], out = dy.shape[1];
  const total = Math.max(2 * (out - 1) + 3 - size, 0), before = Math.floor(total / 2);  // as TensorFlow pads
  const padded = tf.pad(x, [[0, 0], [before, total - before], [before, total - before], [0, 0]]);
  const grad = tf.conv2d(padded.transpose([3, 1, 2, 0]), dy.transpose([1, 2, 0, 3]), 1, 'valid', 'NHWC', 2);
  return grad.transpose([1, 2, 0, 3]);
}

// A per-channel vector [C] repeated for every row of a [rows, C] matrix. A matrix product:
// TensorFlow.js's CPU kernels for broadcasting arithmetic index every element (slow).
function rowsOf(vector, rows) {
  return tf.matMul(tf.ones([rows, 1]), vector.reshape([1, -1]));
}

// ReLU of batch norm of x [pixels, channels] with the batch's own statistics (means over
// pixels as matrix products), and its gradient in closed form (few kernels).
const normRelu = tf.customGrad((x, gamma, beta, save) => {
  const pixels = x.shape[0], average = tf.fill([1, pixels], 1 / pixels);
  const centered = tf.sub(x, rowsOf(tf.matMul(average, x), pixels));
  const scale = tf.rsqrt(tf.add(tf.matMul(average, tf.square(centered)), BN_EPSILON));
  const normalized = tf.mul(centered, rowsOf(scale, pixels));
  const out = tf.relu(tf.add(tf.mul(normalized, rowsOf(gamma, pixels)), rowsOf(beta, pixels)));
  save([normalized, scale, gamma, out, average]);
  return {value: out, gradFunc: (dout, [normalized, scale, gamma, out, average]) => {
    const dy = tf.mul(dout, tf.step(out));
    const meanDy = tf.matMul(average, dy), meanDyNormalized = tf.matMul(average, tf.mul(dy, normalized));
    const centeredDy = tf.sub(dy, tf.add(rowsOf(meanDy, pixels), tf.mul(normalized, rowsOf(meanDyNormalized, pixels))));
    const dx = tf.mul(rowsOf(tf.mul(gamma, scale.reshape(gamma.shape)), pixels), centeredDy);
    return [dx, tf.mul(meanDyNormalized, pixels).reshape(gamma.shape), tf.mul(meanDy, pixels).reshape(gamma.shape)];
  }};
});

// The summed softmax cross-entropy of `images` [n, 28, 28] with integer `labels` [n].
function loss(params, images, labels) {
  const ways = params[params.length - 1].shape[0];
  return tf.neg(tf.sum(tf.mul(tf.oneHot(labels, ways), tf.logSoftmax(logits(params, images)))));
}

// The network on TensorFlow.js, with plainNet's interface: gradients (Float32Arrays) of the
// loss on `images` (a Float32Array of 28x28 images) with `labels`, and the logits of n images.
const tfNet = {
  gradients: (model, params, images, labels) => tf.tidy(() => {
    const x = tf.tensor(images, [labels.length, IMAGE_SIZE, IMAGE_SIZE], 'float32'), y = tf.tensor1d(labels, 'int32');
    const grads = tf.grads((...ps) => loss(ps, x, y))(tensors(model, params));
    return grads.map((g) => g.dataSync());
  }),
  logits: (model, params, images, n) => tf.tidy(
      () => logits(tensors(model, params), tf.tensor(images, [n, IMAGE_SIZE, IMAGE_SIZE], 'float32')).dataSync()),
};
const tensors = (model, params) => params.map((p, k) => tf.tensor(p, model.shapes[k], 'float32'));

// The images of `flat` (28x28 each) at `indices`, as one Float32Array.
function gather(flat, indices) {
  const size = IMAGE_SIZE * IMAGE_SIZE, images = new Float32Array(indices.length * size);
  indices.forEach((index, k) => images.set(flat.subarray(index * size, (index + 1) * size), k * size));
  return images;
}

// Query probabilities after fine-tuning on the support images: the model's own rule.
function classify(flat) {
  const rule = model.rule, ways = flat.length / (IMAGE_SIZE * IMAGE_SIZE) - 1;
  const params = model.params.map((p) => p.slice()), slots = model.slots.map((s) => s.slice());
  const powers = {beta1: f32(rule.beta1_power || 0), beta2: f32(rule.beta2_power || 0)};
  for (const batch of rule.batches) {
    const grads = model.net.gradients(model, params, gather(flat, batch), batch);
    params.forEach((p, k) => update(p, grads[k], slots[k], powers));
    powers.beta1 = f32(powers.beta1 * f32(rule.beta1 || 0));
    powers.beta2 = f32(powers.beta2 * f32(rule.beta2 || 0));
  }
  const all = model.net.logits(model, params, flat, ways + 1);
  return softmax(Array.from(all.slice(ways * ways)));
}

// One optimizer step on weights `p` (in place) with gradient `g`, in float32 as
// optimizers.py applies it: SGD; the web demo's p -= lr * g / (sqrt(v) + eps) with fixed v;
// or Adam with beta1 = 0 (TensorFlow's ApplyAdam: its first moment is then the gradient).
function update(p, g, v, powers) {
  const rule = model.rule, lr = f32(rule.learning_rate), eps = f32(rule.epsilon);
  if (rule.optimizer === 'sgd') {
    for (let j = 0; j < p.length; j++) p[j] -= f32(g[j] * lr);
  } else if (rule.optimizer === 'preconditioned') {
    for (let j = 0; j < p.length; j++) p[j] -= f32(f32(lr * g[j]) / f32(f32(Math.sqrt(v[j])) + eps));
  } else {
    const alpha = f32(f32(lr * f32(Math.sqrt(f32(1 - powers.beta2)))) / f32(1 - powers.beta1));
    const rate = f32(1 - f32(rule.beta2));
    for (let j = 0; j < p.length; j++) {
      v[j] += f32(f32(f32(g[j] * g[j]) - v[j]) * rate);
      p[j] -= f32(f32(g[j] * alpha) / f32(f32(Math.sqrt(v[j])) + eps));
    }
  }
}

// Softmax in double precision, as fewshot.classify computes it from the float32 logits.
function softmax(row) {
  const top = Math.max(...row);
  const exps = row.map((x) => Math.exp(x - top));
  const total = exps.reduce((a, b) => a + b, 0);
  return exps.map((e) => e / total);
}
