"""tools/analyze_logs.py on the log of a real tiny training run, and the one-sentence errors of
a missing path, a folder without a log, a log without training lines and a corrupt line."""
from __future__ import annotations

import json
import re

import pytest
from helpers import ROOT, call_tool, error_line, make_demo_data, run_tool, write_tiny_config
from PIL import Image

from mobileone_dense.utils.logs import draw, find_log, read_log

ITERS = 4  # logged every iteration, validated after iterations 2 and 4
pytestmark = pytest.mark.slow  # one tiny training run in a subprocess


@pytest.fixture(scope='module')
def run(tmp_path_factory):
    """A 4-iteration SSDLite run on 64x64 demo scenes and the scalars.json it wrote."""
    root = tmp_path_factory.mktemp('analyze_logs')
    data = make_demo_data(root / 'demo', train=4, val=2)
    config = write_tiny_config(root / 'tiny.py', data, iters=ITERS, interval=ITERS)
    work = root / 'work'
    result = run_tool(ROOT / 'tools/train.py', config, '--work-dir', work,
                      '--cfg-options', 'train_cfg.val_interval=2')
    assert result.returncode == 0, result.stderr[-3000:]
    logs = list(work.glob('*/vis_data/scalars.json'))
    assert len(logs) == 1, logs
    records = [json.loads(line) for line in logs[0].read_text().splitlines()]
    return dict(work=work, log=logs[0], records=records, text=result.stdout + result.stderr)


def test_tool_draws_a_png_of_a_work_dir(run, capsys):
    status, err = call_tool('analyze_logs', run['work'], capsys=capsys)  # in-process: fast
    assert status == 0, err
    png = run['work'] / 'curves.png'
    with Image.open(png) as image:
        assert image.format == 'PNG' and image.size == (1600, 480)
        image.load()  # decodes every row: a truncated file raises
        darkest, lightest = image.convert('L').getextrema()
        assert darkest < 64 and lightest > 250  # lines and text on a white canvas


def test_series_are_the_logged_values(run):
    curves = read_log(find_log(run['work']))
    train = [r for r in run['records'] if 'iter' in r]
    val = [r for r in run['records'] if 'iter' not in r]
    # One training point per logged iteration, as the text log printed them.
    printed = re.findall(r'Iter\(train\) \[\s*(\d+)/\d+\].*?\bloss: ([\d.]+)', run['text'])
    assert [int(i) for i, _ in printed] == list(range(1, ITERS + 1)) == [r['iter'] for r in train]
    assert curves.train_lines == ITERS and curves.val_lines == len(val) == 2
    assert curves.loss_keys() == ['loss', 'loss_bbox', 'loss_cls']
    for key in ('loss', 'loss_cls', 'loss_bbox', 'lr'):
        assert curves.train[key] == ([r['iter'] for r in train], [r[key] for r in train])
    assert curves.train['loss'][1] == pytest.approx([float(v) for _, v in printed], abs=6e-5)
    # Validation at iterations 2 and 4 (mmengine logs step = epoch, 0 in iteration-based runs);
    # pycocotools' -1 (no object of that size in the 64x64 scenes) is left out.
    assert curves.val_axis == 'iteration' and [r['step'] for r in val] == [0, 0]
    assert 'coco/bbox_mAP' in curves.val
    for key in val[0]:
        if key not in ('step', 'time', 'data_time'):
            kept = [(x, r[key]) for x, r in zip((2, 4), val) if r[key] != -1]
            assert list(zip(*curves.val.get(key, ((), ())))) == kept, key


def test_figure_is_labelled(run, tmp_path):
    fig = draw(read_log(run['log']), tmp_path / 'curves.png')
    losses, lr, metrics = fig.axes
    assert [ax.get_title() for ax in fig.axes] == ['Training losses', 'Learning rate',
                                                   'Validation metrics']
    assert [ax.get_xlabel() for ax in fig.axes] == ['iteration'] * 3
    assert [ax.get_ylabel() for ax in fig.axes] == ['loss', 'learning rate', 'metric']
    assert [t.get_text() for t in losses.get_legend().get_texts()] == ['loss', 'loss_bbox',
                                                                      'loss_cls']
    assert [t.get_text() for t in lr.get_legend().get_texts()] == ['lr']
    assert 'coco/bbox_mAP' in [t.get_text() for t in metrics.get_legend().get_texts()]
    assert fig._suptitle.get_text().endswith('vis_data/scalars.json')


def test_only_what_the_log_has_is_drawn(tmp_path):
    """A run without validation (the demo's, which tools/test.py evaluates afterwards) gets
    two panels, no empty third one."""
    log = tmp_path / 'vis_data' / 'scalars.json'
    log.parent.mkdir()
    log.write_text(''.join(json.dumps(dict(iter=i, lr=0.1 / i, loss=2.0 / i, loss_cls=1.0 / i,
                                          time=0.5)) + '\n' for i in range(1, 6)))
    fig = draw(read_log(log), tmp_path / 'curves.png')
    assert [ax.get_title() for ax in fig.axes] == ['Training losses', 'Learning rate']
    with Image.open(tmp_path / 'curves.png') as image:
        assert image.size[0] < 2 * image.size[1] + 200  # two panels wide, not three


def test_keys_and_out(run, tmp_path, capsys):
    out = tmp_path / 'sub' / 'cls.png'
    status, err = call_tool('analyze_logs', run['log'], '--out', out, '--keys', 'loss_cls',
                            capsys=capsys)
    assert status == 0 and out.is_file(), err
    line = error_line(*call_tool('analyze_logs', run['log'], '--keys', 'loss_x', capsys=capsys))
    assert 'has no training key loss_x: it logs ' in line and 'loss_cls' in line
    line = error_line(*call_tool('analyze_logs', run['log'], '--out', tmp_path / 'c.jpg',
                                 capsys=capsys))
    assert 'c.jpg must end in .png' in line


def test_bad_inputs_are_one_sentence(run, tmp_path, capsys):
    line = error_line(*call_tool('analyze_logs', tmp_path / 'nope', capsys=capsys))
    assert line == f"error: {tmp_path / 'nope'} does not exist: pass a run's work dir or its " \
                   '<timestamp>/vis_data/scalars.json.'
    (tmp_path / 'empty').mkdir()
    line = error_line(*call_tool('analyze_logs', tmp_path / 'empty', capsys=capsys))
    assert f"{tmp_path / 'empty'} holds no mmengine log" in line

    lines = run['log'].read_text().splitlines(keepends=True)
    untrained = tmp_path / 'val_only.json'
    untrained.write_text(''.join(ln for ln in lines if '"iter"' not in ln))
    line = error_line(*call_tool('analyze_logs', untrained, capsys=capsys))
    assert f'{untrained} has no training lines' in line

    corrupt = tmp_path / 'corrupt' / '20250101_000000' / 'vis_data' / 'scalars.json'
    corrupt.parent.mkdir(parents=True)
    corrupt.write_text(''.join(lines[:2]) + '{"loss": 1.0, "it\n' + ''.join(lines[3:]))
    line = error_line(*call_tool('analyze_logs', tmp_path / 'corrupt', capsys=capsys))
    assert line == f'error: {corrupt}:3 is not a JSON object: the file is corrupt or not an ' \
                   'mmengine scalars.json log.'


def test_a_line_being_written_is_skipped(run, tmp_path):
    """mmengine ends every line with a newline: an unfinished last one is still being written."""
    log = tmp_path / 'scalars.json'
    log.write_text(run['log'].read_text() + '{"lr": 0.001, "loss": 1.2')
    assert read_log(log).train == read_log(run['log']).train
