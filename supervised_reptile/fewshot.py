"""Few-shot classification from the shell: fine-tune a stored model on one example per
class, then classify a query.

    python -m supervised_reptile.fewshot --model PATH --images STACK.npy
    python -m supervised_reptile.fewshot --model PATH --support A.png B.png C.png --query Q.png
    python -m supervised_reptile.fewshot --model PATH --drawings DRAWINGS.json [--save-tensors OUT.npy]

Support images come in class order (class i = image i), the query last. Drawings (JSON
`{"paths": [drawing, ...]}` or just the list, each drawing a list of strokes of [x, y]
points, as the web demo's default_drawing.json) are rasterized to 28x28 by `drawing`, the
code the web demo's server uses; --save-tensors keeps the image stack as .npy. The model is any
checkpoint `checkpoint.load_pretrained` reads; it is fine-tuned the way its evaluation
does it (the web demo: 5 steps on all support images with its own rule; others: the
original's defaults, 50 Adam steps on batches of 5) and the query is classified in a batch
of the support images plus the query. Prints one JSON line: {"probs": [...]}.
"""

import json
import sys

from .args import Parser
from .errors import guarded
from .running.startup import quiet_tensorflow


def main(argv=None):
    """Parse flags, load the model, print the query's class probabilities as JSON."""
    parser = Parser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--model', required=True, help='checkpoint folder or prefix, or web-demo .npz')
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument('--images', help='.npy stack: support images in class order, then the query')
    source.add_argument('--support', nargs='+', help='support images (PNG/JPEG), one per class in order')
    source.add_argument('--drawings', help='JSON drawings (as default_drawing.json): support in class order, then the query')
    parser.add_argument('--query', help='query image (with --support)')
    parser.add_argument('--save-tensors', help='also save the images classified (support, then query) as .npy')
    parser.add_argument('--inner-iters', type=int, help='fine-tuning steps (default: the model\'s own)')
    parser.add_argument('--inner-batch', type=int, help='fine-tuning batch size (default: the model\'s own)')
    parser.add_argument('--learning-rate', type=float, default=1e-3, help='Adam step size (checkpoints)')
    args = parser.parse_args(argv)
    if args.support and not args.query:
        parser.error('--support needs --query')
    quiet_tensorflow()  # TensorFlow: only once the flags are valid
    import numpy as np
    from .running import checkpoint
    from .tools.finetune import check_images, classify, fine_tune_steps, read_images, save_stack
    algo = checkpoint.load_pretrained(args.model, learning_rate=args.learning_rate)
    support, query = read_images(algo, args)
    check_images(algo, support, query)
    if args.save_tensors:
        save_stack(args.save_tensors, np.stack(support + [query]))
    probs = classify(algo, support, query, *fine_tune_steps(algo, len(support), args.inner_iters, args.inner_batch))
    print(json.dumps({'probs': probs.tolist()}, allow_nan=False))


def cli():
    """The console command."""
    guarded(lambda: main(sys.argv[1:]))


if __name__ == '__main__':
    cli()
