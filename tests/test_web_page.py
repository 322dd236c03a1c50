"""The web demo (examples/web) in headless Chromium: MediaPipe Tasks for the web, loading its
WASM files from the page's own node_modules, runs the exported int8 detector as MediaPipe's
Python client does, and a file it cannot run gets one sentence on the page.

The page is served by examples/web/serve.py (the page's folder, then a temporary folder with
the model and a held-out scene) and read by tests/web/run_page.mjs (puppeteer-core driving
Debian's /usr/bin/chromium), both installed by ``make install`` (scripts/install_web.sh)."""
from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import mmcv
import pytest
import torch
from helpers import ROOT, free_port, held_out_images

from mobileone_dense.apis import load_config
from mobileone_dense.deploy.mediapipe_client import MediaPipeModel
from mobileone_dense.export.litert import write_tflite

pytestmark = pytest.mark.slow  # a browser, and the session's export

WEB = ROOT / 'examples/web'
RUN_PAGE = ROOT / 'tests/web/run_page.mjs'
CHROMIUM = Path('/usr/bin/chromium')
#: Detections compared: those above this score, on the page and in MediaPipe Python.
SCORE = 0.3
#: Largest difference (pixels) between a box on the page and MediaPipe Python's.
MAX_BOX_PX = 2
#: ... and between their scores (measured on the 12 demo scenes as PNGs: equal boxes and scores).
MAX_SCORE_DIFF = 0.01
#: Seconds for a page (WASM compilation and one image on a loaded 2-core machine).
PAGE_TIMEOUT = 240


def _installed() -> None:
    """Fail (not skip) the test when what the page needs is missing: ``make install``."""
    missing = [what for what, there in [
        (f'Chromium ({CHROMIUM})', CHROMIUM.is_file()),
        ('node', shutil.which('node') is not None),
        ('examples/web/node_modules',
         (WEB / 'node_modules/@mediapipe/tasks-vision/wasm/vision_wasm_internal.wasm').is_file()
         and (WEB / 'node_modules/puppeteer-core/package.json').is_file())] if not there]
    if missing:
        pytest.fail(f'{" and ".join(missing)} missing for the web page test: run make install '
                    f'(scripts/install_web.sh installs Chromium and the page\'s npm packages).',
                    pytrace=False)


@pytest.fixture(scope='module')
def site(tmp_path_factory):
    """(folder, url): examples/web served with ``folder`` (files a test puts there) beside it."""
    folder, port = tmp_path_factory.mktemp('web'), free_port()
    server = subprocess.Popen([sys.executable, WEB / 'serve.py', '--quiet', '--port', str(port),
                               WEB, folder], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while True:
            assert server.poll() is None, server.stderr.read().decode()
            try:
                socket.create_connection(('127.0.0.1', port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, 'examples/web/serve.py did not start'
                time.sleep(0.2)
        yield folder, f'http://127.0.0.1:{port}/'
    finally:
        server.terminate()
        server.wait(timeout=10)


def open_page(url: str) -> dict:
    """What the page shows once done: run_page.mjs's JSON (state, lastResult, lastError, the
    error and status texts, console, requests made, external requests aborted)."""
    run = subprocess.run(['node', RUN_PAGE, url, '--timeout', str(PAGE_TIMEOUT * 1000)],
                         capture_output=True, text=True, timeout=PAGE_TIMEOUT + 60)
    assert run.returncode == 0, run.stderr[-3000:]
    page = json.loads(run.stdout.strip().splitlines()[-1])
    assert page['state'] in ('done', 'error'), page
    # Everything came from the page's server: nothing from a CDN, the WASM from node_modules.
    assert page['external'] == [], page['external']
    return page


def mediapipe_python(exported: dict, image: Path) -> list[dict]:
    """MediaPipe Python's detections on ``image`` (the options of MediaPipeModel: the config's
    score threshold and detections per image)."""
    model = MediaPipeModel(load_config(exported['config']), exported['int8'])
    try:
        found = model.client.detect(model._mp.Image.create_from_file(str(image))).detections
    finally:
        model.close()
    return [dict(label=d.categories[0].category_name, score=d.categories[0].score,
                 box=[d.bounding_box.origin_x, d.bounding_box.origin_y,
                      d.bounding_box.origin_x + d.bounding_box.width,
                      d.bounding_box.origin_y + d.bounding_box.height]) for d in found]


def test_page_detects_what_mediapipe_python_detects(demo_exports, site):
    _installed()  # before the session's export
    exported, (folder, url) = demo_exports['det'], site
    # As a PNG: Chromium's JPEG decoder and MediaPipe Python's give slightly different pixels
    # (scores then differ by up to 0.04 on the int8 model); on the same pixels they agree.
    scene = held_out_images(exported['data'])[0]
    image = folder / f'{scene.stem}.png'
    mmcv.imwrite(mmcv.imread(scene), str(image))
    shutil.copy(exported['int8'], folder / 'model_int8.tflite')  # the page's default model
    test_cfg = exported['model'].bbox_head.test_cfg  # what MediaPipeModel gives MediaPipe
    page = open_page(f'{url}?image={image.name}&threshold={test_cfg.get("score_thr", 0.0)}'
                     f'&max={test_cfg.get("max_per_img", -1)}')
    assert page['state'] == 'done' and page['lastError'] is None and not page['error'], page
    assert any(r.startswith('/node_modules/@mediapipe/tasks-vision/wasm/') and
               r.endswith('.wasm') for r in page['requests']), page['requests']
    assert page['lastResult']['width'] == page['lastResult']['height'] == 256

    ours = [d for d in page['lastResult']['detections'] if d['score'] > SCORE]
    theirs = [d for d in mediapipe_python(exported, image) if d['score'] > SCORE]
    assert len(ours) == len(theirs) > 0, (ours, theirs)
    assert {d['label'] for d in ours} <= set(exported['classes'])
    for expected in theirs:
        distance = [max(abs(a - b) for a, b in zip(d['box'], expected['box'])) for d in ours]
        best = ours[min(range(len(ours)), key=distance.__getitem__)]
        assert min(distance) <= MAX_BOX_PX and best['label'] == expected['label'], \
            (expected, ours)
        assert abs(best['score'] - expected['score']) < MAX_SCORE_DIFF, (expected, best)


@pytest.mark.parametrize('content, sentence', [
    ('bare', 'bad.tflite has no MediaPipe metadata: export it with tools/export.py'),
    ('text', 'bad.tflite is not a LiteRT model: export one with tools/export.py'),
], ids=['no-metadata', 'not-a-model'])
def test_a_file_mediapipe_cannot_run_shows_one_sentence(site, content, sentence):
    _installed()
    folder, url = site
    model = folder / 'bad.tflite'
    if content == 'bare':  # a LiteRT file without MediaPipe's metadata
        write_tflite(torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1)).eval(),
                     torch.rand(1, 3, 32, 32) * 255, model)
    else:
        model.write_text('not a model\n')
    page = open_page(f'{url}?model=bad.tflite')
    assert page['state'] == 'error' and page['lastResult'] is None, page
    error = page['lastError']
    assert error == page['error'] and error.startswith(sentence), page
    assert len(re.findall(r'[.!?](\s|$)', error)) == 1 and '\n' not in error, error
