"""Core ML export (mobileone_dense.export: coreml, coreml_check): the demo SSDLite-mu0 and
DeepLabV3-mu0 (random weights, fused) convert to ML programs whose check passes (one conv per
convolution the fused network runs, no batch_norm), the train-time network's program fails it,
FP16 and FP32 show in the spec, a segmentor declares its class map alone, and the image input
(BGR, -mean in the bias, the rest folded into the first convolution) gives the network's
outputs. Core ML cannot predict on Linux, so the preprocessing is checked in PyTorch and in the
program's constants. The detector's Vision pipeline: test_coreml_pipeline.py."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from helpers import ROOT
from torch import nn

from mobileone_dense.apis import build_model, load_config
from mobileone_dense.errors import ExportError
from mobileone_dense.export import coreml, coreml_check
from mobileone_dense.export.graph import Normalize
from mobileone_dense.export.numerics import make_image
from mobileone_dense.models import reparameterize_model
from mobileone_dense.tasks import task_of

CONFIGS = {'det': ROOT / 'configs/ssdlite/mobileone_mu0_demo.py',
           'seg': ROOT / 'configs/deeplabv3/mobileone_mu0_demo.py'}
SIZE = (128, 128)


def _case(name: str) -> SimpleNamespace:
    """A demo config's train-time model, its fused copy, the fused network and an image."""
    cfg = load_config(CONFIGS[name])
    task = task_of(cfg)
    torch.manual_seed(0)
    model = build_model(cfg)
    fused = reparameterize_model(model)
    return SimpleNamespace(cfg=cfg, task=task, model=model, fused=fused,
                           network=task.network(fused, SIZE), image=make_image(SIZE))


@pytest.fixture(scope='module')
def det() -> SimpleNamespace:
    return _case('det')


@pytest.fixture(scope='module')
def seg() -> SimpleNamespace:
    return _case('seg')


@pytest.fixture(scope='module')
def det_fp16(det, tmp_path_factory) -> dict:
    path = coreml.write_coreml(det.network, det.image,
                               tmp_path_factory.mktemp('det') / 'model.mlpackage',
                               output_names=det.task.network_output_names, log=lambda _: None)
    return coreml_check.inspect_coreml(path, coreml_check.count_convs(det.network, det.image))


def _conv2d_modules(module: nn.Module) -> int:
    return sum(isinstance(m, nn.Conv2d) for m in module.modules())


# ------------------------------------------------------------------------------ the image input
def test_without_a_fold_the_whole_normalisation_stays_in_the_graph():
    """A network whose normalised image feeds two convolutions cannot take the fold: the image
    input then passes the pixels as they are, and the graph normalises them itself."""
    pre = SimpleNamespace(_channel_conversion=True, _enable_normalize=True,
                          mean=torch.tensor([10., 20., 30.]).view(3, 1, 1),
                          std=torch.tensor([50., 60., 70.]).view(3, 1, 1))

    class Core(nn.Module):
        def __init__(self):
            super().__init__()
            self.normalize = Normalize(pre)
            self.a, self.b = nn.Conv2d(3, 4, 3), nn.Conv2d(3, 4, 3)

        def forward(self, x):
            x = self.normalize(x)
            return self.a(x) + self.b(x)

    network = nn.Module()
    network.core = Core()
    network.forward = lambda x: network.core(x)
    graph, image_input = coreml.image_graph(network, make_image((16, 16)))
    assert image_input == coreml.ImageInput()  # BGR, scale 1, bias 0
    assert isinstance(graph.core.normalize, Normalize) and graph.core.normalize.std is not None


@pytest.mark.parametrize('name', ['det', 'seg'])
def test_converted_graph_on_the_image_input_is_the_network(name, request):
    """What write_coreml converts, fed what Core ML's image input makes of a picture (its
    channels in the input's layout, then scale and bias), gives the network's outputs on the
    BGR image; none of the normalisation is left in the graph."""
    case = request.getfixturevalue(name)
    graph, folding = coreml.image_graph(case.network, case.image)
    assert folding.color_layout == 'BGR' and folding.scale == 1.0
    mean = case.cfg.model.data_preprocessor['mean']  # RGB
    assert folding.bias == pytest.approx([-m for m in mean[::-1]], rel=1e-6)
    assert isinstance(case.network.core.normalize, Normalize)  # the original is untouched
    assert coreml_check.count_convs(graph, case.image) == coreml_check.count_convs(
        case.network, case.image)
    bgr = make_image(SIZE, seed=2)  # not the image the fold was checked on
    pixels = bgr if folding.color_layout == 'BGR' else bgr.flip(1)
    image_input = folding.scale * pixels + torch.tensor(folding.bias).view(1, 3, 1, 1)
    with torch.no_grad():
        for a, b in zip(graph(image_input), case.network(bgr)):
            torch.testing.assert_close(a.float(), b.float(), rtol=1e-4, atol=1e-4)


# ------------------------------------------------------------------------------ the program
@pytest.mark.slow
def test_fused_detector_program_passes_the_check(det, det_fp16):
    r = det_fp16
    assert r['ok'], r['problems']
    # every Conv2d of the fused SSDLite network runs once: one conv op each, no branch left
    assert r['convs'] == r['expected_convs'] == _conv2d_modules(det.network)
    assert coreml_check.count_convs(det.network) == r['expected_convs']  # image from input_size
    assert r['text'] == coreml_check.describe(r)
    assert r['batch_norms'] == 0 and 'batch_norm' not in r['op_counts']
    # the channel swap and the division by std are folded into the first conv
    # (fold_normalization): the image input is BGR, as mmcv loads it, with bias -mean
    assert r['input'] == dict(name='image', type='image', color_layout='BGR',
                              shape=[1, 3, *SIZE])
    mean = det.cfg.model.data_preprocessor['mean']  # RGB
    assert r['preprocessing']['scale'] == 1.0
    assert r['preprocessing']['bias'] == pytest.approx([-m for m in mean[::-1]], rel=1e-6)
    # the bias on the fp32 image and the cast to fp16; then the first conv
    assert r['input_ops'] == ['add', 'cast']
    num_anchors = sum(det.network.level_anchors)
    assert [(o['name'], o['shape']) for o in r['outputs']] == [
        ('boxes', [1, num_anchors, 4]), ('scores', [1, num_anchors, 5])]
    assert r['precision'] == 'fp16' and r['opset'] == 'CoreML5' and r['pipeline'] is None
    assert 'macOS' in r['predictions'] and 'OK' in coreml_check.describe(r)


@pytest.mark.slow
def test_fused_segmentor_program_in_fp32(seg, tmp_path):
    lines = []
    r = coreml.export_coreml(seg.network, seg.image, tmp_path / 'model.mlpackage',
                             precision='fp32', output_names=coreml.SEGMENTOR_OUTPUTS,
                             log=lines.append)
    assert any('converting' in line for line in lines)
    assert 'program check' in lines[-1] and 'OK' in lines[-1] and 'macOS' in lines[-1]
    expected = coreml_check.count_convs(seg.network, seg.image)
    # the auxiliary head's convs are never run at inference, so they do not count
    assert expected < _conv2d_modules(seg.network)
    assert coreml_check.count_convs(seg.network) == expected  # a 128x128 image by default
    assert r['ok'], r['problems']
    assert r['convs'] == expected and r['batch_norms'] == 0
    assert r['precision'] == 'fp32' and r['input_ops'] == ['add']  # no fp16 cast, no 1/std
    assert r['input']['color_layout'] == 'BGR'
    # the one output an app reads: the class map (the logits stay inside the program)
    assert [(o['name'], o['dtype'], o['shape']) for o in r['outputs']] == [
        ('class_map', 'INT32', [1, *SIZE])]
    spec = coreml_check.import_coremltools().models.MLModel(
        r['path'], skip_model_load=True).get_spec()
    assert spec.WhichOneof('Type') == 'mlProgram' and 'class index' in \
        spec.description.output[0].shortDescription


@pytest.mark.slow
def test_train_time_program_fails_the_check(seg, tmp_path, monkeypatch):
    """The check can fail: the unfused network keeps its branches (convs) and skip BNs."""
    unfused = seg.task.network(seg.model, SIZE)
    path = coreml.write_coreml(unfused, seg.image, tmp_path / 'model.mlpackage',
                               output_names=seg.task.network_output_names, log=lambda _: None)
    r = coreml_check.inspect_coreml(path, coreml_check.count_convs(seg.network, seg.image))
    assert not r['ok']
    assert r['convs'] > r['expected_convs'] and r['batch_norms'] > 0
    assert len(r['problems']) == 2 and 'branches survived' in r['problems'][0]
    assert 'FAILED' in coreml_check.describe(r)
    # export_coreml refuses such a program and leaves nothing behind (the same package,
    # checked against the fused network, without converting again)
    monkeypatch.setattr(coreml, 'write_coreml', lambda *args, **kwargs: path)
    monkeypatch.setattr(coreml, 'count_convs', lambda *args: r['expected_convs'])
    with pytest.raises(ExportError, match='fails its check') as info:
        coreml.export_coreml(unfused, seg.image, path, log=lambda _: None)
    assert '\n' not in str(info.value) and not path.exists()


# ------------------------------------------------------------------------------ errors
class _DataDependent(nn.Module):
    def forward(self, x):
        return x * 2 if x.mean() > 100 else x


@pytest.mark.slow
def test_errors_are_one_sentence(tmp_path):
    image = torch.zeros(1, 3, 32, 32)
    with pytest.raises(ExportError, match='precision'):
        coreml.write_coreml(_DataDependent(), image, tmp_path / 'm.mlpackage', precision='int8')
    with pytest.raises(ExportError, match='.mlpackage'):
        coreml.write_coreml(_DataDependent(), image, tmp_path / 'm.mlmodel')
    with pytest.raises(ExportError) as info:
        coreml.write_coreml(_DataDependent(), image, tmp_path / 'm.mlpackage',
                            log=lambda _: None)
    message = str(info.value)
    assert message.startswith('torch.export could not export _DataDependent') and \
        '\n' not in message and 'nothing was written' in message
    assert not (tmp_path / 'm.mlpackage').exists()
    with pytest.raises(ExportError, match='does not exist'):
        coreml_check.inspect_coreml(tmp_path / 'm.mlpackage', 1)
