"""Every bad input met in training and testing ends in one sentence naming it and the fix, and
exit status 1 (issue 12, item 5): a truncated checkpoint (tools/test.py, --resume PATH, --resume
alone, load_from), an unknown arch, a corrupt annotation JSON, an unreadable image (training
skips it with a warning) and setuptools without pkg_resources."""
import json
import shutil
import sys

import pytest
import torch
from helpers import ROOT, call_tool, error_line, make_demo_data, run_tool, write_tiny_config

from mobileone_dense.apis import check_checkpoint_file, read_checkpoint
from mobileone_dense.errors import CheckpointMismatchError

TRAIN = ROOT / 'tools' / 'train.py'
pytestmark = pytest.mark.slow  # the tools run on a tiny training run
BAD_TRAIN_IMAGE = 'images/train/000003.jpg'
TRUNCATED = 'not a file that torch.save wrote, or cut short'


@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    """Demo data whose training split has one unreadable image, a 2-iteration config (4 images
    a batch, so the first two batches draw every training image), and what training on it
    printed and saved."""
    root = tmp_path_factory.mktemp('bad_inputs')
    data = make_demo_data(root / 'demo')
    (data / BAD_TRAIN_IMAGE).write_bytes(b'\xff\xd8\xff\xe0 the machine died here')
    config = write_tiny_config(root / 'tiny.py', data, iters=2, interval=2)
    work = root / 'work'
    result = run_tool(TRAIN, config, '--work-dir', work,
                      '--cfg-options', 'train_dataloader.batch_size=4')
    return dict(root=root, data=data, config=config, work=work, result=result,
                checkpoint=work / 'iter_2.pth')


def truncated_copy(checkpoint, path):
    data = checkpoint.read_bytes()
    path.write_bytes(data[:len(data) // 2])
    return path


def copy_with(tiny, tmp_path, name, change):
    """A copy of the tiny data set and config, with ``change(data_dir)`` applied to the data."""
    data = tmp_path / name
    shutil.copytree(tiny['data'], data)
    change(data)
    return write_tiny_config(tmp_path / f'{name}.py', data, iters=2, interval=2)


def test_training_skips_an_unreadable_image_with_a_warning_naming_it(tiny):
    result = tiny['result']
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-3000:]
    assert 'Traceback' not in log
    bad = tiny['data'] / BAD_TRAIN_IMAGE
    assert f'Skipping image {bad}, which cannot be read (it is cut short or not an image): ' \
           f'training goes on with the other images' in log
    assert 'Iter(train) [2/2]' in log and tiny['checkpoint'].is_file()


def test_testing_stops_on_an_unreadable_image_with_one_sentence(tiny, tmp_path, capsys):
    def corrupt(data):
        (data / 'images/val/000002.jpg').write_bytes(b'')
    config = copy_with(tiny, tmp_path, 'bad_val_image', corrupt)
    # a dataloader worker raises it: torch wraps it in the worker's traceback
    line = error_line(*call_tool('test', config, tiny['checkpoint'], '--work-dir', tmp_path / 'w',
                                 '--cfg-options', 'test_dataloader.num_workers=1',
                                 capsys=capsys))
    assert line == (f'error: Image {tmp_path}/bad_val_image/images/val/000002.jpg cannot be read '
                    f'(the file is empty): replace it with a readable copy, or remove it and its '
                    f'annotations from the data set.')


def test_truncated_checkpoint_to_test_resume_and_load_from(tiny, tmp_path, capsys):
    truncated = truncated_copy(tiny['checkpoint'], tmp_path / 'cut.pth')
    expected = (f'error: {truncated} is not a complete checkpoint ({TRUNCATED}): it was probably '
                f'cut short while being written or copied; use another checkpoint')
    runs = {
        'test': ('test', tiny['config'], truncated, '--work-dir', tmp_path / 'test'),
        'resume PATH': ('train', tiny['config'], '--work-dir', tmp_path / 'resume',
                        '--resume', truncated),
        'load_from': ('train', tiny['config'], '--work-dir', tmp_path / 'load',
                      '--cfg-options', f'load_from={truncated}'),
    }
    for name, args in runs.items():
        line = error_line(*call_tool(*args, capsys=capsys))
        assert line.startswith(expected), (name, line)


def test_resume_alone_names_the_truncated_newest_checkpoint_and_an_earlier_one(tiny, tmp_path,
                                                                               capsys):
    work = tmp_path / 'work'
    work.mkdir()
    shutil.copy(tiny['checkpoint'], work / 'iter_1.pth')
    newest = truncated_copy(tiny['checkpoint'], work / 'iter_2.pth')
    (work / 'last_checkpoint').write_text(str(newest))  # as mmengine's CheckpointHook writes it
    line = error_line(*call_tool('train', tiny['config'], '--work-dir', work, '--resume',
                                 capsys=capsys))
    assert line == (
        f'error: {newest} is not a complete checkpoint ({TRUNCATED}): it is the newest '
        f'checkpoint in {work}, the one --resume alone continues from, and was probably cut '
        f'short while being saved; --resume does not fall back to an older checkpoint by '
        f'itself: pass an earlier one with --resume PATH, e.g. --resume {work}/iter_1.pth.')


def test_check_checkpoint_file(tiny, tmp_path):
    check_checkpoint_file(tiny['checkpoint'])  # complete: its zip directory opens
    check_checkpoint_file('https://example.com/any.pth')  # left to mmengine
    (tmp_path / 'empty.pth').write_bytes(b'')
    (tmp_path / 'notes.pth').write_text('not a checkpoint\n')
    for name, reason in (('empty.pth', 'the file is empty'),
                         ('notes.pth', 'not a file that torch.save wrote, or cut short')):
        with pytest.raises(CheckpointMismatchError, match=rf'{name} is not a complete '
                                                          rf'checkpoint \({reason}\)'):
            check_checkpoint_file(tmp_path / name)
    legacy = tmp_path / 'legacy.pth'
    torch.save({'state_dict': {}}, legacy, _use_new_zipfile_serialization=False)
    check_checkpoint_file(legacy)  # not a zip: loaded once, and complete
    evil = tmp_path / 'evil.pth'
    torch.save({'state_dict': {}, 'payload': CheckpointMismatchError('x')}, evil)
    with pytest.raises(CheckpointMismatchError, match='holds Python objects that safe loading '
                                                      'refuses'):
        check_checkpoint_file(evil) or read_checkpoint(evil)


@pytest.mark.parametrize('tool', ['train', 'test'])
def test_unknown_arch_names_the_choices(tiny, tmp_path, tool, capsys):
    args = (tiny['config'], tiny['checkpoint']) if tool == 'test' else (tiny['config'], )
    line = error_line(*call_tool(tool, *args, '--work-dir', tmp_path,
                                 '--cfg-options', 'model.backbone.arch=s9', capsys=capsys))
    assert line == ("error: Unknown MobileOne arch 's9': choose one of s0, s1, s2, s3, s4, mu0, "
                    "mu1, mu2 or pass a dict with the fields num_blocks, widths, "
                    "num_conv_branches, num_se_blocks.")


def test_corrupt_annotation_json_names_the_file_and_the_line(tiny, tmp_path, capsys):
    def cut_train(data):
        path = data / 'annotations/instances_train.json'
        text = path.read_text()
        path.write_text(text[:len(text) // 2])

    def bad_val(data):  # pretty-printed, then a comma dropped from one of its lines
        path = data / 'annotations/instances_val.json'
        lines = json.dumps(json.loads(path.read_text()), indent=1).splitlines()
        lines[5] = lines[5].rstrip(',')
        path.write_text('\n'.join(lines))

    config = copy_with(tiny, tmp_path, 'cut_train', cut_train)
    line = error_line(*call_tool('train', config, '--work-dir', tmp_path / 'train',
                                 capsys=capsys))
    assert line.startswith(
        f'error: CocoDataset annotation file {tmp_path}/cut_train/annotations/'
        f'instances_train.json (read by train_dataloader.dataset) is not valid JSON '
        f'(Expecting ')
    assert 'at line 1, column ' in line and 'it was probably cut short or damaged' in line

    config = copy_with(tiny, tmp_path, 'bad_val', bad_val)
    with pytest.raises(json.JSONDecodeError) as parsed:
        json.loads((tmp_path / 'bad_val/annotations/instances_val.json').read_text())
    assert parsed.value.lineno == 7
    line = error_line(*call_tool('test', config, tiny['checkpoint'], '--work-dir',
                                 tmp_path / 'test', capsys=capsys))
    assert line.startswith(
        f"error: CocoDataset annotation file {tmp_path}/bad_val/annotations/instances_val.json "
        f"(read by test_dataloader.dataset) is not valid JSON (Expecting ',' delimiter at line "
        f"7, column {parsed.value.colno}): ")


SITECUSTOMIZE = '''
import sys
from importlib.machinery import PathFinder


class NoPkgResources(PathFinder):
    """The import system as it is once setuptools 82 removed pkg_resources: not found."""

    @classmethod
    def find_spec(cls, name, path=None, target=None):
        if name.partition('.')[0] == 'pkg_resources':
            return None
        return super().find_spec(name, path, target)


sys.meta_path[:] = [NoPkgResources if f is PathFinder else f for f in sys.meta_path]
'''


def test_setuptools_without_pkg_resources_names_the_fix(tiny, tmp_path, monkeypatch):
    (tmp_path / 'sitecustomize.py').write_text(SITECUSTOMIZE)
    monkeypatch.setenv('PYTHONPATH', str(tmp_path))
    probe = run_tool('-c', 'import importlib.util as u; print(u.find_spec("pkg_resources")); '
                           'import pkg_resources')
    assert probe.stdout.strip() == 'None'  # the simulation is faithful: not found, as after
    assert "ModuleNotFoundError: No module named 'pkg_resources'" in probe.stderr  # an upgrade
    result = run_tool(TRAIN, tiny['config'], '--work-dir', tmp_path / 'work')
    assert result.returncode == 1 and 'Traceback' not in result.stderr, result.stderr[-3000:]
    lines = [ln for ln in result.stderr.splitlines() if ln.startswith('error: ')]
    assert lines == [
        f'error: setuptools in this Python environment has no pkg_resources module, which '
        f'mmengine needs to read the configs (setuptools 82 removed it; a pip install of another '
        f'package probably upgraded it): run `{sys.executable} -m pip install '
        f'"setuptools<70"`, the version make install pins.']
