"""Interactive few-shot demo in the browser: draw one example per class, then a query.

    python -m supervised_reptile.demo --model PATH [--ways 3] [--port 8000] [--host 127.0.0.1]

Serves, on 127.0.0.1 by default, the web page that `reptile-export MODEL --web` writes for
the model (`tools.webexport`, built in memory: the page fine-tunes in the browser), and a
JSON API that fine-tunes in Python, which the page uses when opened as /?engine=server:

    POST /api/classify  {"drawings": [class 1, ..., class N, query]}
    -> 200 {"probs": [N floats], "images": [N + 1 images of 28 rows of 0/1], "ms": time}
    -> 400 {"error": message} for malformed input

Each drawing is a list of strokes of [x, y] points (canvas fractions). The server
rasterizes them with `drawing` (as the original web demo) and fine-tunes the model on the
support drawings exactly as `fewshot` does (`fewshot.classify`, the model's own rule). The
standard library's http.server is enough: requests are small, and a lock serializes the
model calls. No request touches the file system.
"""

import http.server
import json
import sys
import threading
import time
import traceback
import urllib.parse

from .startup import quiet_tensorflow

quiet_tensorflow()  # before the imports below, which start TensorFlow

import numpy as np  # noqa: E402

from . import checkpoint, drawing, fewshot  # noqa: E402
from .tools import webexport  # noqa: E402
from .args import Parser  # noqa: E402
from .errors import guarded  # noqa: E402
from .errors import InputError  # noqa: E402

MAX_BODY = 1 << 20   # bytes per request
DRAIN_LIMIT = 8 << 20  # an oversized body is read up to this much before answering 400
CONTENT_TYPES = {'html': 'text/html; charset=utf-8', 'js': 'text/javascript; charset=utf-8',
                 'txt': 'text/plain; charset=utf-8'}
HOW_TO_GET_A_MODEL = (
    'pass --model with a trained Omniglot model: the published web-demo parameters '
    '(reptile_webdemo_omniglot_3way.npz, e.g. ../shared/data/webdemo/), or a checkpoint folder '
    'trained with `python run_omniglot.py --classes 3 --checkpoint ckpt_demo ...` (then --model ckpt_demo)')


def load_model(path, ways):
    """The Reptile model at `path` (any format `checkpoint.load_pretrained` reads), checked to
    be an Omniglot model with `ways` classes."""
    if not path:
        raise InputError(f'no model: {HOW_TO_GET_A_MODEL}')
    algo = checkpoint.load_pretrained(path)
    classes = algo.model.output_shape[-1]
    webexport.check_model(algo, path)
    if classes != ways:
        raise InputError(f'{path} holds a {classes}-way model, not {ways}-way: pass --ways {classes}, '
                         f'or train a model with run_omniglot.py --classes {ways}')
    return algo


class Classifier:
    """Drawings in, query class probabilities out: rasterize, fine-tune, classify.

    Thread-safe: rasterizing runs in parallel, the model calls one at a time (they reseed
    Python's `random` and share the model's variables).
    """

    def __init__(self, algo):
        self.algo = algo
        self.ways = algo.model.output_shape[-1]
        self.size = algo.model.input_shape[1]
        self.steps = fewshot.fine_tune_steps(algo, self.ways)
        self.lock = threading.Lock()

    def images(self, drawings):
        """The support images and the query rasterized from JSON drawings; InputError if malformed."""
        if not isinstance(drawings, list) or len(drawings) != self.ways + 1:
            count = len(drawings) if isinstance(drawings, list) else 'no list of'
            raise InputError(f'send {self.ways + 1} drawings ({self.ways} classes, then the query), '
                             f'got {count}')
        names = [f'class {i + 1}' for i in range(self.ways)] + ['the query']
        return np.stack([drawing.rasterize(d, self.size, name) for d, name in zip(drawings, names)])

    def __call__(self, drawings):
        """(probabilities of the query's classes, the rasterized images)."""
        images = self.images(drawings)
        with self.lock:
            probs = fewshot.classify(self.algo, list(images[:-1]), images[-1], *self.steps)
        return probs, images

    def warm_up(self):
        """Trace the model's tf.function once, so the first visitor waits no longer than the rest."""
        lines = [[[[0, 0], [1, i / self.ways]]] for i in range(self.ways)]
        self(lines + [lines[0]])


class Handler(http.server.BaseHTTPRequestHandler):
    """GET / and the page's files, POST /api/classify the model; everything else is 404.

    The server object carries `classifier` and `files` (the page's, in memory); there is no
    file handler at all.
    """
    timeout = 30  # seconds a client may stall a request (socket timeout)
    disable_nagle_algorithm = True  # headers and body go out as separate writes
    protocol_version = 'HTTP/1.1'

    def do_GET(self):
        """The page at / and its files by name (any query string ignored); 404 for every other path."""
        name = urllib.parse.urlsplit(self.path).path.lstrip('/') or 'index.html'
        if name in self.server.files:
            self._send(200, self.server.files[name], CONTENT_TYPES[name.rpartition('.')[2]])
        else:
            self._send_json(404, {'error': 'not found: the demo serves its page and POST /api/classify'})

    def do_POST(self):
        """Classify the drawings in the JSON body; 400 with a message for any bad input."""
        if urllib.parse.urlsplit(self.path).path != '/api/classify':
            self.close_connection = True  # the body is left unread
            self._send_json(404, {'error': 'not found: POST drawings to /api/classify'})
            return
        start = time.perf_counter()
        try:
            probs, images = self.server.classifier(self._drawings())
        except InputError as exc:
            self._send_json(400, {'error': str(exc)})
        except Exception:  # a bug: say so, log it, keep serving
            self.log_error('%s', traceback.format_exc())
            self._send_json(500, {'error': 'internal error (see the server log)'})
        else:
            self._send_json(200, {'probs': probs.tolist(), 'images': (images < 0.5).astype(int).tolist(),
                                  'ms': round((time.perf_counter() - start) * 1000, 1)})

    def _drawings(self):
        """The drawings of the JSON body {"drawings": [...]}; InputError if it is not that."""
        try:
            request = json.loads(self._body())
        except (ValueError, RecursionError) as exc:  # not JSON, not UTF-8, nested too deep
            raise InputError(f'the body is not valid JSON ({exc.__class__.__name__})') from None
        if not isinstance(request, dict) or 'drawings' not in request:
            raise InputError('send a JSON object {"drawings": [...]}')
        return request['drawings']

    def _body(self):
        """The request body (bytes); InputError when it is missing or larger than MAX_BODY."""
        try:
            length = int(self.headers.get('Content-Length', ''))
        except ValueError:
            length = -1
        if length < 0:
            self.close_connection = True
            raise InputError('send the drawings as a JSON body with a Content-Length header')
        if length > MAX_BODY:
            self.close_connection = True
            self.rfile.read(min(length, DRAIN_LIMIT))  # let the client finish sending, then answer
            raise InputError(f'the request is {length} bytes, more than the limit of {MAX_BODY}')
        return self.rfile.read(length)

    def _send_json(self, status, obj):
        """A JSON response."""
        self._send(status, json.dumps(obj).encode('utf-8'), 'application/json')

    def _send(self, status, body, content_type):
        """A complete response with headers that keep the browser from loading anything else."""
        self.send_response(status)
        self.send_header('Content-Type', content_type)
        self.send_header('Content-Length', str(len(body)))
        self.send_header('Cache-Control', 'no-store')
        self.send_header('X-Content-Type-Options', 'nosniff')
        self.send_header('Content-Security-Policy', "default-src 'none'; script-src 'self'; worker-src blob:; "
                         "style-src 'unsafe-inline'; connect-src 'self'")
        self.end_headers()
        self.wfile.write(body)

    def log_request(self, code='-', size='-'):
        """Quiet: log failed requests only."""
        if str(code).startswith(('4', '5')):
            super().log_request(code, size)


def make_server(classifier, host='127.0.0.1', port=8000):
    """A threading HTTP server for `classifier` (port 0: any free port; see server_address)."""
    server = http.server.ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    server.classifier = classifier
    server.files = webexport.files(classifier.algo)
    return server


def main(argv=None):
    """Parse flags, load and warm up the model, serve until Ctrl-C."""
    parser = Parser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--model', help='web-demo .npz, or a checkpoint folder or prefix (an Omniglot model)')
    parser.add_argument('--ways', type=int, default=3, choices=range(2, 6), help='classes (2-5, default 3)')
    parser.add_argument('--port', type=int, default=8000, help='port (default 8000; 0: any free one)')
    parser.add_argument('--host', default='127.0.0.1', help='address to bind (default 127.0.0.1: this machine only)')
    args = parser.parse_args(argv)
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
