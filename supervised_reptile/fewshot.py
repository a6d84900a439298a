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

from .args import parse, parser
from .errors import guarded
from .running.startup import quiet_tensorflow


def argument_parser():
    """The command's flags."""
    return parser(['model', 'images', 'support', 'drawings', 'query', 'save_tensors', 'fine_tune_iters',
                   'fine_tune_batch', 'learning_rate'], __doc__.split('\n\n')[0], required=['model'],
                  exclusive=['images', 'support', 'drawings'])


def main(argv=None):
    """Parse flags, load the model, print the query's class probabilities as JSON."""
    args = parse(argument_parser(), argv)
    quiet_tensorflow()  # TensorFlow: only once the flags are valid
    import numpy as np
    from .running import checkpoint
    from .tools.finetune import check_images, classify, fine_tune_steps, read_images, save_stack
    algo = checkpoint.load_pretrained(args.model, learning_rate=args.learning_rate)
    support, query = read_images(algo, args)
    check_images(algo, support, query)
    if args.save_tensors:
        save_stack(args.save_tensors, np.stack(support + [query]))
    probs = classify(algo, support, query, *fine_tune_steps(algo, len(support), args.fine_tune_iters, args.fine_tune_batch))
    print(json.dumps({'probs': probs.tolist()}, allow_nan=False))


def cli():
    """The console command."""
    guarded(lambda: main(sys.argv[1:]))


if __name__ == '__main__':
    cli()
