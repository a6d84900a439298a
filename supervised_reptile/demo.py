"""Interactive few-shot demo in the browser: draw one example per class, then a query.

    python -m supervised_reptile.demo [--model PATH] [--ways 3] [--port 8000] [--host 127.0.0.1]

Without --model it serves the published web-demo weights that ship with the package.

Serves, on 127.0.0.1 by default, the web page that `reptile-export MODEL --web` writes for
the model (`tools.webexport`, built in memory: the page fine-tunes in the browser), and a
JSON API that fine-tunes in Python, which the page uses when opened as /?engine=server:

    POST /api/classify  {"drawings": [class 1, ..., class N, query]}
    -> 200 {"probs": [N floats], "images": [N + 1 images of 28 rows of 0/1], "ms": time}
    -> 400 {"error": message} for malformed input
    -> 403 for a Host header that is not the server's own name (on loopback: localhost,
       127.0.0.1 or [::1] with the port), so that no other web page can reach the API
       through the visitor's browser (DNS rebinding); 415 for a body that is not
       Content-Type application/json (which a cross-site form cannot send)

Each drawing is a list of strokes of [x, y] points (canvas fractions). The server
rasterizes them with `drawing` (as the original web demo) and fine-tunes the model on the
support drawings exactly as `fewshot` does (`finetune.classify`, the model's own rule); see
`tools.server`.
"""

import sys

from .args import parse, parser
from .assets import WEBDEMO
from .errors import InputError, guarded
from .running.startup import quiet_tensorflow


def argument_parser():
    """The command's flags; --model defaults to the published web-demo weights."""
    return parser(['model', 'ways', 'port', 'host'], __doc__.split('\n\n')[0],
                  defaults={'model': str(WEBDEMO / 'reptile_webdemo_omniglot_3way.npz')})


def main(argv=None):
    """Parse flags, load and warm up the model, serve until Ctrl-C."""
    args = parse(argument_parser(), argv)
    quiet_tensorflow()  # TensorFlow: only once the flags are valid
    from .tools.server import Classifier, load_model, make_server
    classifier = Classifier(load_model(args.model, args.ways))
    classifier.warm_up()
    try:
        server = make_server(classifier, args.host, args.port)
    except OSError as exc:
        raise InputError(f'cannot listen on {args.host}:{args.port} ({exc.strerror}): pass another --port') from None
    host, port = server.server_address[:2]
    print(f'Serving the {classifier.ways}-way demo at http://{host}:{port}/ (Ctrl-C to stop)', flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


def cli():
    """The console command."""
    guarded(lambda: main(sys.argv[1:]))


if __name__ == '__main__':
    cli()
