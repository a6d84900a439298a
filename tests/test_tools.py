"""The tools for stored models: fewshot, compare and export, on the real fixtures."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from supervised_reptile.running import checkpoint
from supervised_reptile import compare, export, fewshot
from supervised_reptile.models import apply, repeated_groups


def _printed_json(capsys):
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_fewshot_reproduces_the_web_demos_probabilities(webdemo, capsys):
    """The web-demo parameters on the demo's default drawing tensors give the reference
    probabilities (computed by the original demo's own rule) within 1e-4."""
    fewshot.main(['--model', str(webdemo / 'reptile_webdemo_omniglot_3way.npz'),
                  '--images', str(webdemo / 'default_drawing_tensors.npy')])
    reference = json.loads((webdemo / 'default_drawing_reference.json').read_text())['probs']
    np.testing.assert_allclose(_printed_json(capsys)['probs'], reference, atol=1e-4)


def test_fewshot_png_input_matches_the_npy_stack(webdemo, tmp_path, capsys):
    """PNG files (here grayscale, so they are thresholded to 1 bit first) give the same
    answer as the same images in a .npy stack."""
    stack = np.load(webdemo / 'default_drawing_tensors.npy')
    paths = []
    for i, image in enumerate(stack):
        paths.append(tmp_path / f'{i}.png')
        Image.fromarray((image * 255).astype(np.uint8), mode='L').resize((105, 105), Image.NEAREST).save(paths[-1])
    model = str(webdemo / 'reptile_webdemo_omniglot_3way.npz')
    fewshot.main(['--model', model, '--support', *map(str, paths[:3]), '--query', str(paths[3])])
    from_pngs = _printed_json(capsys)['probs']
    fewshot.main(['--model', model, '--images', str(webdemo / 'default_drawing_tensors.npy')])
    np.testing.assert_allclose(from_pngs, _printed_json(capsys)['probs'], atol=1e-6)


def test_fewshot_refuses_a_wrong_number_of_support_images(webdemo, tmp_path):
    """A 3-way model with 4 support images: one-line InputError naming the count."""
    np.save(tmp_path / 'five.npy', np.ones((5, 28, 28), np.float32))
    with pytest.raises(checkpoint.InputError, match='3 support images'):
        fewshot.main(['--model', str(webdemo / 'reptile_webdemo_omniglot_3way.npz'),
                      '--images', str(tmp_path / 'five.npy')])


@pytest.mark.slow
def test_compare_pairs_models_on_the_same_tasks(original_ckpt, omniglot_data, capsys):
    """A model compared with itself: identical accuracies and a paired difference of exactly
    zero with a zero-width interval -- the tasks and mini-batches really are shared."""
    compare.main([str(original_ckpt), str(original_ckpt), '--data-dir', str(omniglot_data), '--train-chars', '180',
                  '--shots', '1', '--eval-batch', '5', '--eval-iters', '5', '--eval-samples', '6',
                  '--transductive'])
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].split(' accuracy: ')[1] == lines[1].split(' accuracy: ')[1]
    assert lines[2].endswith(': +0.0000 ± 0.0000 (95% CI of the paired difference, 6 tasks)')


def test_compare_refuses_a_model_of_another_shape(original_ckpt, webdemo, omniglot_data):
    """The 3-way web-demo model does not fit 5-way tasks: one-line InputError."""
    with pytest.raises(checkpoint.InputError, match='3-way'):
        compare.main([str(original_ckpt), str(webdemo / 'reptile_webdemo_omniglot_3way.npz'),
                      '--data-dir', str(omniglot_data), '--train-chars', '180', '--eval-samples', '2'])


def test_export_writes_tf1_and_keras_models_with_the_same_weights(original_ckpt, tmp_path):
    """--tf1 writes the original's names and values; --keras a model that, called with
    training=True, gives the same logits as the package's forward pass."""
    export.main([str(original_ckpt), '--tf1', str(tmp_path / 'tf1'), '--keras', str(tmp_path / 'm.keras')])
    source = tf.train.load_checkpoint(str(original_ckpt / 'model.ckpt-2999'))
    exported = tf.train.load_checkpoint(str(tmp_path / 'tf1'))
    for name in ['conv2d/kernel', 'batch_normalization_3/gamma', 'dense/bias', 'dense/kernel/Adam_1']:
        np.testing.assert_array_equal(exported.get_tensor(name), source.get_tensor(name))
    model = keras.models.load_model(tmp_path / 'm.keras')
    algo = checkpoint.load_pretrained(str(original_ckpt))
    images = np.random.default_rng(0).random((6, 28, 28)).astype(np.float32)
    params = [repeated_groups(v, 1) for v in algo.variables]
    np.testing.assert_allclose(model(images, training=True), apply(algo.model, params, images[None])[0], atol=1e-4)


def test_results_file_follows_the_umask_and_refuses_a_folder_up_front(tmp_path):
    """A results file gets the permissions open() would give under the umask (not
    mkstemp's 0600); a --results naming a folder is refused when the file is opened,
    before any work."""
    import os
    from supervised_reptile.errors import InputError
    from supervised_reptile.running.results import ResultsFile
    previous = os.umask(0o022)
    try:
        results = ResultsFile(str(tmp_path / 'r.jsonl'), {'seed': 0}, 'model')
        results.write()
    finally:
        os.umask(previous)
    assert (tmp_path / 'r.jsonl').stat().st_mode & 0o777 == 0o644
    assert json.loads((tmp_path / 'r.jsonl').read_text())['type'] == 'header'
    with pytest.raises(InputError, match='is a folder'):
        ResultsFile(str(tmp_path), {}, 'model')
