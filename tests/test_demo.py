"""The web demo server: its JSON API on a live server (good, bad and concurrent requests, no
file access), the exported page it serves, its command line, and the page end to end on the
Python engine in headless Chromium driven by Selenium (tests/test_webpage.py tests the page
on the browser's own engine)."""

import http.client
import json
import math
import re
import threading

import pytest

from supervised_reptile import demo
from supervised_reptile.args import parse
from supervised_reptile.assets import WEBDEMO
from supervised_reptile.tools import server as demo_server
from supervised_reptile.tools import drawing
from supervised_reptile.errors import guarded


# Three distinct characters, in canvas fractions: a circle, an X, a Z.
CIRCLE = [[[round(0.5 + 0.3 * math.cos(a / 12 * math.pi), 3), round(0.5 + 0.3 * math.sin(a / 12 * math.pi), 3)]
           for a in range(25)]]
CROSS = [[[0.2, 0.2], [0.8, 0.8]], [[0.8, 0.2], [0.2, 0.8]]]
ZED = [[[0.2, 0.2], [0.8, 0.2], [0.2, 0.8], [0.8, 0.8]]]
SHAPES = [CIRCLE, CROSS, ZED]


@pytest.fixture(scope='module')
def model_path(webdemo):
    """The published 3-way web-demo model."""
    return webdemo / 'reptile_webdemo_omniglot_3way.npz'


@pytest.fixture(scope='module')
def server(model_path):
    """(host, port) of a demo server running in this process on a free port."""
    classifier = demo_server.Classifier(demo_server.load_model(str(model_path), 3))
    classifier.warm_up()
    httpd = demo_server.make_server(classifier, '127.0.0.1', 0)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd.server_address[:2]
    httpd.shutdown()
    httpd.server_close()


def request(server, method, path, body=None, headers=None):
    """(status, decoded JSON or raw bytes) of one HTTP request on a fresh connection."""
    connection = http.client.HTTPConnection(*server, timeout=30)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        data = response.read()
    finally:
        connection.close()
    is_json = response.getheader('Content-Type') == 'application/json'
    return response.status, json.loads(data) if is_json else data


def classify(server, drawings):
    """POST drawings to the API."""
    return request(server, 'POST', '/api/classify', json.dumps({'drawings': drawings}),
                   {'Content-Type': 'application/json'})


def assert_good(server, query=1):
    """A well-formed request gets probabilities summing to 1, the query's copy winning."""
    status, result = classify(server, SHAPES + [SHAPES[query]])
    assert status == 200, result
    assert len(result['probs']) == 3 and abs(sum(result['probs']) - 1) < 1e-6
    assert max(range(3), key=result['probs'].__getitem__) == query
    assert len(result['images']) == 4 and len(result['images'][0]) == 28
    return result


def test_good_request(server):
    """Each class's own copy as the query is classified as that class."""
    for query in range(3):
        assert_good(server, query)


@pytest.mark.parametrize('body, words', [
    (b'{"drawings": [', 'JSON'),
    (b'\xff\xfe', 'JSON'),
    (b'[' * 100000 + b']' * 100000, 'JSON'),
    (b'[1, 2]', 'object'),
    (json.dumps({'drawings': SHAPES}).encode(), 'send 4 drawings'),
    (json.dumps({'drawings': 'abc'}).encode(), 'send 4 drawings'),
    (json.dumps({'drawings': SHAPES + [[]]}).encode(), 'the query is empty'),
    (json.dumps({'drawings': [[[]]] + SHAPES}).encode(), 'class 1'),
    (json.dumps({'drawings': SHAPES + [[[[0.5, 0.5]] * (drawing.MAX_POINTS + 1)]]}).encode(), 'points'),
    (json.dumps({'drawings': SHAPES + [[[['x', 0]]]]}).encode(), 'pair of numbers'),
    (b' ' * (demo_server.MAX_BODY + 1), 'limit'),
])
def test_bad_request_gets_400_and_server_keeps_serving(server, body, words):
    """Malformed, wrong-sized or oversized requests: HTTP 400 with a message; then a good one works."""
    status, result = request(server, 'POST', '/api/classify', body, {'Content-Type': 'application/json'})
    assert status == 400 and words in result['error'], result
    assert_good(server)


def test_missing_length_gets_400(server):
    """A POST without a body (no Content-Length) is refused, not waited for."""
    connection = http.client.HTTPConnection(*server, timeout=30)
    connection.putrequest('POST', '/api/classify')
    connection.putheader('Content-Type', 'application/json')
    connection.endheaders()
    response = connection.getresponse()
    assert response.status == 400 and 'Content-Length' in json.loads(response.read())['error']
    connection.close()
    assert_good(server)


def test_concurrent_requests(server):
    """Clients at once all get their own right answer (the model calls are serialized)."""
    results = {}
    threads = [threading.Thread(target=lambda k=k: results.update({k: classify(server, SHAPES + [SHAPES[k]])}))
               for k in (0, 1, 2, 0)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for k, (status, result) in results.items():
        assert status == 200 and max(range(3), key=result['probs'].__getitem__) == k


def test_a_burst_of_50_clients_all_get_answers(server):
    """50 clients connecting at once (while the model holds the interpreter) all get their
    answer: none is reset by a full listen queue."""
    start, results = threading.Barrier(50), {}

    def client(k):
        start.wait(timeout=30)
        try:
            results[k] = classify(server, SHAPES + [SHAPES[k % 3]])
        except OSError as exc:  # a reset or a timeout: what the test is about
            results[k] = (exc.__class__.__name__, None)
    threads = [threading.Thread(target=client, args=(k,), daemon=True) for k in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert sorted(results) == list(range(50))
    for k, (status, result) in results.items():
        assert status == 200 and max(range(3), key=result['probs'].__getitem__) == k % 3, (k, status)


@pytest.mark.parametrize('host', ['evil.example:{port}', 'localhost', '127.0.0.1:1', '[::1]', ''])
def test_another_host_name_gets_403(server, host):
    """A request naming another host (a page of another site reaching the server through
    DNS rebinding), another port or no host at all is refused with a JSON error."""
    headers = {'Content-Type': 'application/json', 'Host': host.format(port=server[1])}
    for method, body in (('GET', None), ('POST', json.dumps({'drawings': SHAPES + [CIRCLE]}))):
        status, result = request(server, method, '/api/classify' if body else '/', body, headers)
        assert status == 403 and 'not this server' in result['error'], (method, status, result)


@pytest.mark.parametrize('name', ['localhost', '127.0.0.1', '[::1]', 'LOCALHOST'])
def test_loopback_names_with_the_port_are_served(server, name):
    status, result = request(server, 'POST', '/api/classify', json.dumps({'drawings': SHAPES + [CIRCLE]}),
                             {'Content-Type': 'application/json', 'Host': f'{name}:{server[1]}'})
    assert status == 200, result


@pytest.mark.parametrize('content_type', [None, 'text/plain', 'application/x-www-form-urlencoded',
                                          'multipart/form-data; boundary=x'])
def test_a_body_that_is_not_declared_json_gets_415(server, content_type):
    """What a cross-site form can send without asking (text/plain, form encodings) is refused."""
    headers = {'Content-Type': content_type} if content_type else {}
    status, result = request(server, 'POST', '/api/classify', json.dumps({'drawings': SHAPES + [CIRCLE]}), headers)
    assert status == 415 and 'application/json' in result['error'], result
    status, _ = request(server, 'POST', '/api/classify', json.dumps({'drawings': SHAPES + [CIRCLE]}),
                        {'Content-Type': 'application/json; charset=utf-8'})
    assert status == 200


def test_nan_probabilities_get_a_json_error_not_invalid_json(model_path):
    """A model whose answer is NaN gets 500 with a JSON error (valid JSON), not NaN."""
    classifier = demo_server.Classifier(demo_server.load_model(str(model_path), 3))
    dense = classifier.algo.model.trainable_variables[-2]
    dense.assign(dense * float('inf'))
    httpd = demo_server.make_server(classifier, '127.0.0.1', 0)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        connection = http.client.HTTPConnection(*httpd.server_address[:2], timeout=60)
        connection.request('POST', '/api/classify', json.dumps({'drawings': SHAPES + [CIRCLE]}),
                           {'Content-Type': 'application/json'})
        response = connection.getresponse()
        body = response.read().decode()
        connection.close()
    finally:
        httpd.shutdown()
        httpd.server_close()
    result = json.loads(body, parse_constant=lambda name: pytest.fail(f'{name} in {body}'))
    assert response.status == 500 and 'not finite' in result['error'], body


@pytest.mark.parametrize('method, path', [
    ('GET', '/../../etc/passwd'), ('GET', '/README.md'), ('GET', '/supervised_reptile/demo.py'),
    ('GET', '/demo_page.html'), ('GET', '/api/classify'), ('POST', '/'), ('POST', '/../api/classify'),
])
def test_no_other_path_is_served(server, method, path):
    """Only the page and the API exist: every other path is 404, no file is ever read."""
    status, result = request(server, method, path, b'{}' if method == 'POST' else None)
    assert status == 404 and 'not found' in result['error']


def test_serves_the_exported_page(server, model_path, tmp_path):
    """/ and every script the page loads are the files `reptile-export --web` writes."""
    from supervised_reptile import export
    export.main([str(model_path), '--web', str(tmp_path)])
    status, page = request(server, 'GET', '/')
    assert status == 200 and page == (tmp_path / 'index.html').read_bytes()
    scripts = re.findall(r'<script src="([^"]+)"', page.decode())
    assert 'model.js' in scripts and 'engine.js' in scripts
    for name in scripts:
        assert request(server, 'GET', '/' + name) == (200, (tmp_path / name).read_bytes())


def test_without_a_model_the_published_weights_are_served():
    """No --model: the web-demo weights that ship with the package, a 3-way model."""
    model = parse(demo.argument_parser(), []).model
    assert model == str(WEBDEMO / 'reptile_webdemo_omniglot_3way.npz')
    assert demo_server.load_model(model, 3).model.output_shape[-1] == 3


def test_cli_refuses_other_ways(model_path, capsys):
    """A 3-way model with --ways 4: exit status 2 and a message with the fix."""
    with pytest.raises(SystemExit) as exit_info:
        guarded(lambda: demo.main(['--model', str(model_path), '--ways', '4']))
    assert exit_info.value.code == 2
    assert '3-way omniglot model, not a 4-way omniglot one: pass --ways 3' in capsys.readouterr().err


def test_checkpoint_models_work(shared_dir):
    """--model also takes a checkpoint folder (here the original's own, 5-way)."""
    classifier = demo_server.Classifier(demo_server.load_model(str(shared_dir / 'fixtures' / 'original' / 'ckpt_o15t'), 5))
    shapes = SHAPES + [[[[0.2, 0.2], [0.5, 0.8], [0.8, 0.2]]], [[[0.2, 0.2], [0.8, 0.2]], [[0.5, 0.2], [0.5, 0.8]]]]
    probs, images = classifier(shapes + [shapes[3]])
    assert images.shape == (6, 28, 28) and abs(sum(probs) - 1) < 1e-6 and probs.argmax() == 3


# --- End to end in a real browser ------------------------------------------------------------


def draw(driver, canvas, strokes):
    """Draw strokes (lists of canvas fractions) on `canvas` with real pointer actions."""
    from selenium.webdriver.common.action_chains import ActionChains
    width, height = canvas.size['width'], canvas.size['height']
    offset = lambda point: (round((point[0] - 0.5) * width), round((point[1] - 0.5) * height))  # from the center
    actions = ActionChains(driver, duration=0)
    for stroke in strokes:
        actions.move_to_element_with_offset(canvas, *offset(stroke[0])).click_and_hold()
        for point in stroke[1:]:
            actions.move_to_element_with_offset(canvas, *offset(point))
        actions.release()
    actions.perform()


def answers_to_drawn_copies(browser):
    """Clear the page's boxes, draw SHAPES as the classes with real pointer actions, then a
    copy of each as the query in turn: the page's answer {probs, backend, ...} to each copy."""
    canvases = browser.find_elements('css selector', 'canvas.draw')
    buttons = browser.find_elements('css selector', '.cell button')
    assert len(canvases) == len(buttons) == 4
    for button, canvas, shape in zip(buttons, canvases, SHAPES):
        button.click()
        draw(browser, canvas, shape)
    answers = []
    for shape in SHAPES:
        buttons[3].click()
        draw(browser, canvases[3], shape)
        answers.append(browser.execute_async_script(  # the answer for the drawings as they are now
            'window.reptileDemo.answerFor(null).then(arguments[arguments.length - 1]);'))
    return answers


def shown_probs(browser):
    """The probabilities of the page's bars."""
    return [float(bar.get_attribute('data-prob')) for bar in browser.find_elements('css selector', '.bar')]


def test_browser_end_to_end_on_the_python_engine(browser, server, tmp_path):
    """The page with ?engine=server: each drawn copy of a class is classified as that class
    by the server, and the bars show its answer."""
    browser.get('http://%s:%d/?engine=server' % server)
    answers = answers_to_drawn_copies(browser)
    for k, result in enumerate(answers):
        assert result['backend'] == 'python' and abs(sum(result['probs']) - 1) < 1e-6
        assert max(range(3), key=result['probs'].__getitem__) == k, result['probs']
    assert shown_probs(browser) == answers[-1]['probs']
    assert 'Error' not in browser.find_element('id', 'status').text
    browser.save_screenshot(str(tmp_path / 'demo.png'))
