// The demo's fine-tuning engine, run in a Web Worker (TensorFlow.js is prepended to this
// source; see page.js). It keeps the exported model and answers one job at a time:
//
//   {type: 'init', model, backend}  -> {type: 'ready', backend}
//   {type: 'classify', id, images}  -> {type: 'answer', id, probs, ms}   (or {type: 'error', message})
//
// `images` is a Float32Array of (ways + 1) 28x28 images, 1 = background: the support
// images in class order, then the query. The network, loss and update rules are the
// package's (supervised_reptile/models.py, reptile.py, optimizers.py): 4 x [conv 3x3
// stride 2 'same' (+ bias); batch norm with the batch's own statistics (epsilon 1e-3);
// ReLU], flatten, dense; the loss is the sum over the mini-batch of the softmax
// cross-entropies; each step updates every weight with the model's rule; the query is
// classified in a batch of the support images plus the query.
'use strict';

const BN_EPSILON = 1e-3;
const f32 = Math.fround;  // scalars as float32, as TensorFlow computes the update's hyper-parameters
let model = null;  // {rule, params: [tf.Tensor], slots: [tf.Tensor]} once initialized

self.onmessage = async (event) => {
  const job = event.data;
  try {
    if (job.type === 'init') {
      await tf.setBackend(job.backend || (await webglWorks() ? 'webgl' : 'cpu'));
      model = load(job.model);
      self.postMessage({type: 'ready', backend: tf.getBackend()});
    } else {
      const start = performance.now();
      const probs = classify(job.images);
      self.postMessage({type: 'answer', id: job.id, probs, ms: performance.now() - start});
    }
  } catch (err) {
    self.postMessage({type: 'error', id: job.id, message: String(err && err.message || err)});
  }
};

// Whether WebGL runs here (browsers without a GPU or software GL have none).
async function webglWorks() {
  try {
    return await tf.setBackend('webgl');
  } catch (err) {
    return false;
  }
}

// The model's weights and second moments as tensors, from the float32 buffer of the export.
function load({rule, shapes, buffer}) {
  const values = new Float32Array(buffer);
  let offset = 0;
  const take = (shape) => {
    const size = shape.reduce((a, b) => a * b, 1);
    const tensor = tf.tensor(values.subarray(offset, offset + size), shape, 'float32');
    offset += size;
    return tensor;
  };
  const params = shapes.map(take);
  const slots = rule.optimizer === 'sgd' ? [] : shapes.map(take);
  return {rule, params, slots};
}

// Logits [n, ways] of the network with weights `params` on images [n, 28, 28].
function logits(params, images) {
  const [n, size] = images.shape;
  let out = images.reshape([n, size, size, 1]);
  let i = 0;
  for (let block = 0; block < 4; block++) {
    out = tf.conv2d(out, params[i++], 2, 'same');
    if (model.rule.conv_bias) out = tf.add(out, params[i++]);
    out = tf.relu(batchNorm(out, params[i], params[i + 1]));
    i += 2;
  }
  return tf.add(tf.matMul(out.reshape([n, -1]), params[i]), params[i + 1]);
}

// Batch norm with the batch's own statistics, in tf.nn.batch_normalization's form:
// x * inv + (beta - mean * inv), inv = gamma / sqrt(variance + epsilon).
function batchNorm(x, gamma, beta) {
  const {mean, variance} = tf.moments(x, [0, 1, 2]);
  const inv = tf.mul(tf.rsqrt(tf.add(variance, BN_EPSILON)), gamma);
  return tf.add(tf.mul(x, inv), tf.sub(beta, tf.mul(mean, inv)));
}

// The summed softmax cross-entropy of `images` [n, 28, 28] with integer `labels` [n].
function loss(params, images, labels) {
  const ways = params[params.length - 1].shape[0];
  return tf.neg(tf.sum(tf.mul(tf.oneHot(labels, ways), tf.logSoftmax(logits(params, images)))));
}

// Query probabilities after fine-tuning on the support images: the model's own rule.
function classify(flat) {
  const rule = model.rule, size = 28, ways = flat.length / (size * size) - 1;
  const all = tf.tensor(flat, [ways + 1, size, size], 'float32');
  const support = all.slice(0, ways);
  let params = model.params.map((p) => p.clone());
  let slots = model.slots.map((s) => s.clone());
  let beta2Power = f32(rule.beta2_power || 0);
  for (const batch of rule.batches) {
    const next = tf.tidy(() => {
      const indices = tf.tensor1d(batch, 'int32');
      const images = tf.gather(support, indices);
      const grads = tf.grads((...ps) => loss(ps, images, indices))(params);
      return update(params, slots, grads, beta2Power);
    });
    params.concat(slots).forEach((t) => t.dispose());
    [params, slots] = next;
    beta2Power = f32(beta2Power * f32(rule.beta2 || 0));
  }
  const row = tf.tidy(() => logits(params, all).slice([ways, 0], [1, ways]).dataSync());
  params.concat(slots, [all, support]).forEach((t) => t.dispose());
  return softmax(Array.from(row));
}

// One optimizer step: [new params, new slots] (as optimizers.py: Adam with beta1 = 0, so
// its first moment is the gradient; the web demo's fixed preconditioner; or SGD).
function update(params, slots, grads, beta2Power) {
  const rule = model.rule, lr = f32(rule.learning_rate);
  if (rule.optimizer === 'sgd') return [params.map((p, k) => tf.sub(p, tf.mul(lr, grads[k]))), []];
  if (rule.optimizer === 'preconditioned') {
    return [params.map((p, k) => tf.sub(p, tf.div(tf.mul(lr, grads[k]), tf.add(tf.sqrt(slots[k]), f32(rule.epsilon))))),
            slots.map((s) => s.clone())];
  }
  const step = f32(f32(lr * f32(Math.sqrt(f32(1 - beta2Power)))) / f32(1 - f32(rule.beta1_power)));
  const moments = slots.map((v, k) => tf.add(v, tf.mul(tf.sub(tf.square(grads[k]), v), f32(1 - f32(rule.beta2)))));
  return [params.map((p, k) => tf.sub(p, tf.div(tf.mul(grads[k], step), tf.add(tf.sqrt(moments[k]), f32(rule.epsilon))))),
          moments];
}

// Softmax in double precision, as fewshot.classify computes it from the float32 logits.
function softmax(row) {
  const top = Math.max(...row);
  const exps = row.map((x) => Math.exp(x - top));
  const total = exps.reduce((a, b) => a + b, 0);
  return exps.map((e) => e / total);
}
