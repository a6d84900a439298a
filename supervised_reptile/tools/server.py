"""The demo's HTTP server: the exported web page from memory (`webexport.files`), and a JSON
API that fine-tunes in Python (`finetune.classify`, the model's own rule). The command and
its API are described in `supervised_reptile.demo`.

The standard library's http.server is enough: requests are small, and a lock serializes
the model calls. No request touches the file system.
"""

import http.server
import ipaddress
import json
import threading
import time
import traceback
import urllib.parse

import numpy as np

from ..errors import Diverged, InputError
from ..running import checkpoint
from . import drawing, finetune, webexport

MAX_BODY = 1 << 20   # bytes per request
DRAIN_LIMIT = 8 << 20  # an oversized body is read up to this much before answering 400
CONTENT_TYPES = {'html': 'text/html; charset=utf-8', 'js': 'text/javascript; charset=utf-8',
                 'txt': 'text/plain; charset=utf-8'}


def load_model(path, ways):
    """The Reptile model at `path` (any format `checkpoint.load_pretrained` reads), checked to
    be an Omniglot model with `ways` classes."""
    algo = checkpoint.load_pretrained(path)
    webexport.check_model(algo, path)
    classes = algo.model.output_shape[-1]
    checkpoint.check_model(algo, 'omniglot', ways, path,
                           f'pass --ways {classes}, or train a model with run_omniglot.py --classes {ways}')
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
        self.steps = finetune.fine_tune_steps(algo, self.ways)
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
            probs = finetune.classify(self.algo, list(images[:-1]), images[-1], *self.steps)
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
        if not self._host_allowed():
            return
        name = urllib.parse.urlsplit(self.path).path.lstrip('/') or 'index.html'
        if name in self.server.files:
            self._send(200, self.server.files[name], CONTENT_TYPES[name.rpartition('.')[2]])
        else:
            self._send_json(404, {'error': 'not found: the demo serves its page and POST /api/classify'})

    def do_POST(self):
        """Classify the drawings in the JSON body; 400 with a message for any bad input."""
        if not self._host_allowed():
            return
        if urllib.parse.urlsplit(self.path).path != '/api/classify':
            self.close_connection = True  # the body is left unread
            self._send_json(404, {'error': 'not found: POST drawings to /api/classify'})
            return
        if self.headers.get_content_type() != 'application/json':
            self.close_connection = True
            self._send_json(415, {'error': 'send the drawings with Content-Type: application/json'})
            return
        start = time.perf_counter()
        try:
            probs, images = self.server.classifier(self._drawings())
        except InputError as exc:
            self._send_json(400, {'error': str(exc)})
        except Diverged as exc:  # the model's answer is NaN: say so, as JSON
            self._send_json(500, {'error': str(exc)})
        except Exception:  # a bug: say so, log it, keep serving
            self.log_error('%s', traceback.format_exc())
            self._send_json(500, {'error': 'internal error (see the server log)'})
        else:
            self._send_json(200, {'probs': probs.tolist(), 'images': (images < 0.5).astype(int).tolist(),
                                  'ms': round((time.perf_counter() - start) * 1000, 1)})

    def _host_allowed(self):
        """Whether the Host header names this server (see `allowed_hosts`); else answer 403."""
        allowed = self.server.allowed_hosts
        if allowed is None or (self.headers.get('Host') or '').lower() in allowed:
            return True
        self.close_connection = True
        self._send_json(403, {'error': f'Host {self.headers.get("Host")!r} is not this server\'s: '
                                       f'open http://{sorted(allowed)[0]}/'})
        return False

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
        self._send(status, json.dumps(obj, allow_nan=False).encode('utf-8'), 'application/json')

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


class Server(http.server.ThreadingHTTPServer):
    """The standard threading server with a deeper listen queue: while the model works it
    holds the interpreter, and the default backlog of 5 resets a burst of clients."""
    request_queue_size = 128
    daemon_threads = True


LOOPBACK_NAMES = ('localhost', '127.0.0.1', '[::1]')


def allowed_hosts(address, port):
    """The Host headers a server bound to `address` (numeric) and `port` answers: on a
    loopback address, its loopback names with the port (and without it on port 80);
    elsewhere any (None): the names it is reached by are unknown."""
    if not ipaddress.ip_address(address).is_loopback:
        return None
    return {f'{name}:{port}' for name in LOOPBACK_NAMES} | (set(LOOPBACK_NAMES) if port == 80 else set())


def make_server(classifier, host='127.0.0.1', port=8000):
    """A threading HTTP server for `classifier` (port 0: any free port; see server_address)."""
    server = Server((host, port), Handler)
    server.allowed_hosts = allowed_hosts(*server.server_address[:2])
    server.classifier = classifier
    server.files = webexport.files(classifier.algo)
    return server
