"""bfloat16 training on the CPU: CPUBF16OptimWrapper, tools/train.py --amp, the train benchmark.

The wrapper refuses a CPU without bfloat16 instructions, where bfloat16 would be emulated and
slower than float32; the tests pretend the CPU has them (``pretend_bf16``, ``PRETEND`` for a
tool's subprocess), so that the bfloat16 path runs, emulated where it must be, on any CPU."""
import argparse

import pytest
import torch
import torch.nn.functional as F
from helpers import ROOT, call_tool, error_line, make_demo_data, run_tool, write_tiny_config
from mmengine.model import BaseModel
from mmengine.optim import OptimWrapper
from torch import nn

from mobileone_dense.engine import CPUBF16OptimWrapper
from mobileone_dense.engine import optim_wrapper as bf16_module
from mobileone_dense.errors import UsageError
from mobileone_dense.models import MobileOneBlock
from mobileone_dense.utils.safe_load import mmengine_checkpoints

TRAIN = ROOT / 'tools' / 'train.py'
#: A sitecustomize.py for a tool's subprocess: the process takes the CPU for one with bfloat16
#: instructions (pretend_bf16's patch, made before the tool runs).
PRETEND = """
import mobileone_dense.engine.optim_wrapper as wrapper
wrapper.cpu_bf16_instructions = lambda: ['AVX512-BF16']
"""


@pytest.fixture
def pretend_bf16(monkeypatch):
    """Let the wrapper be built on any CPU (for what does not compute in bfloat16)."""
    monkeypatch.setattr(bf16_module, 'cpu_bf16_instructions', lambda: ['AVX512-BF16'])


class TinyModel(BaseModel):
    """A MobileOne block and a linear classifier. Its loss is cross-entropy (autocast runs it
    in float32), or with ``bf16_loss`` a squared error that stays bfloat16 under autocast."""

    def __init__(self, bf16_loss=False):
        super().__init__()
        self.block = MobileOneBlock(3, 8, 3, num_conv_branches=2)
        self.head = nn.Linear(8, 3)
        self.bf16_loss = bf16_loss

    def forward(self, inputs, data_samples=None, mode='tensor'):
        logits = self.head(self.block(inputs).mean((2, 3)))
        if mode != 'loss':
            return logits
        if self.bf16_loss:
            return dict(loss_sq=(logits - 1).pow(2).mean())
        return dict(loss_cls=F.cross_entropy(logits, data_samples))


def tiny_batch():
    g = torch.Generator().manual_seed(0)
    return dict(inputs=torch.randn(4, 3, 16, 16, generator=g),
                data_samples=torch.randint(0, 3, (4, ), generator=g))


def test_one_bf16_step_trains_with_float32_master_weights(pretend_bf16, monkeypatch):
    model = TinyModel(bf16_loss=True)
    model.train()
    wrapper = CPUBF16OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9))
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    seen = {}

    def record(name):
        def hook(module, inputs, output):
            seen.setdefault(name, output.dtype)
        return hook

    for name in ('block', 'head'):
        getattr(model, name).register_forward_hook(record(name))
    backward_dtypes = []
    real_backward = OptimWrapper.backward
    monkeypatch.setattr(OptimWrapper, 'backward', lambda self, loss, **kw: (
        backward_dtypes.append(loss.dtype), real_backward(self, loss, **kw))[1])

    log_vars = model.train_step(tiny_batch(), wrapper)

    assert seen == dict(block=torch.bfloat16, head=torch.bfloat16)  # the forward ran in bf16
    assert log_vars['loss'].dtype == torch.bfloat16  # ... its loss may too,
    assert backward_dtypes == [torch.float32]  # but backward starts from a float32 loss
    assert all(torch.isfinite(v).all() for v in log_vars.values())
    for name, p in model.named_parameters():
        assert p.dtype == torch.float32, name  # master weights stay float32
        assert not torch.equal(p, before[name]), f'{name} did not change'
    momentum = [s['momentum_buffer'] for s in wrapper.optimizer.state.values()]
    assert momentum and all(m.dtype == torch.float32 for m in momentum)
    # Validation runs outside the wrapper's context: float32 again.
    assert not torch.is_autocast_enabled('cpu')
    model.eval()
    assert model.val_step(tiny_batch()).dtype == torch.float32


def test_bf16_gradient_accumulation_and_clipping(pretend_bf16):
    model = TinyModel()
    model.train()
    wrapper = CPUBF16OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.1),
                                  accumulative_counts=2, clip_grad=dict(max_norm=1.0))
    before = model.head.weight.detach().clone()
    model.train_step(tiny_batch(), wrapper)
    assert torch.equal(model.head.weight, before)  # first of two accumulated steps
    assert model.head.weight.grad is not None and model.head.weight.grad.dtype == torch.float32
    model.train_step(tiny_batch(), wrapper)
    assert not torch.equal(model.head.weight, before)
    assert wrapper.message_hub.get_scalar('train/grad_norm') is not None


def test_state_dict_round_trip_drops_an_amp_loss_scaler(pretend_bf16):
    model = TinyModel()
    model.train()
    wrapper = CPUBF16OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9))
    wrapper.optimizer.zero_grad()
    model(**tiny_batch(), mode='loss')['loss_cls'].backward()  # float32: any CPU
    wrapper.step()
    state = wrapper.state_dict()
    assert 'loss_scaler' not in state  # the same state as a float32 OptimWrapper's
    fresh = CPUBF16OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9))
    fresh.load_state_dict(dict(state, loss_scaler={'scale': 65536.0}))  # an AmpOptimWrapper's
    assert fresh.get_lr()['lr'] == [0.1]
    for a, b in zip(wrapper.optimizer.state.values(), fresh.optimizer.state.values()):
        assert torch.equal(a['momentum_buffer'], b['momentum_buffer'])
    plain = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9))
    plain.load_state_dict(fresh.state_dict())  # and back to float32 training
    assert plain.get_lr()['lr'] == [0.1]


@pytest.mark.parametrize('scope', ['mmdet', 'mmseg'])
def test_configs_of_mmdet_and_mmseg_find_the_wrapper(scope, pretend_bf16):
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import DefaultScope, init_default_scope
    init_default_scope(scope)
    assert DefaultScope.get_current_instance().scope_name == scope
    cfg = dict(type='CPUBF16OptimWrapper', loss_scale='dynamic',  # as --amp on a GPU sets it
               optimizer=dict(type='SGD', lr=0.01, momentum=0.9))
    wrapper = build_optim_wrapper(TinyModel(), cfg)
    assert type(wrapper) is CPUBF16OptimWrapper


def test_unsupported_cpu_says_so_in_one_sentence(monkeypatch, capsys):
    monkeypatch.setattr(bf16_module, 'cpu_bf16_instructions', lambda: [])
    with pytest.raises(UsageError, match=r"^This CPU has no bfloat16 instructions .*: train in "
                                         r"float32 .*optim_wrapper.type='OptimWrapper'"):
        CPUBF16OptimWrapper(torch.optim.SGD(TinyModel().parameters(), lr=0.1))
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    config = ROOT / 'configs/ssdlite/mobileone_mu0_demo.py'
    line = error_line(*call_tool('train', config, '--amp', capsys=capsys))
    assert line.startswith('error: This CPU has no bfloat16 instructions (AVX512-BF16 or AMX')
    assert line.endswith('so it cannot train in bfloat16: train without --amp.')


def test_wrapper_refuses_other_dtypes_and_devices(pretend_bf16):
    with pytest.raises(UsageError, match='trains in bfloat16 only, not float16'):
        CPUBF16OptimWrapper(torch.optim.SGD(TinyModel().parameters(), lr=0.1), dtype='float16')
    model = TinyModel().to('meta')
    wrapper = CPUBF16OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.1))
    with pytest.raises(UsageError, match='trains on the CPU but the model is on meta'):
        with wrapper.optim_context(model):
            pass


@pytest.mark.slow
def test_train_tool_amp_trains_in_bf16(tmp_path, monkeypatch):
    (tmp_path / 'site').mkdir()
    (tmp_path / 'site' / 'sitecustomize.py').write_text(PRETEND)
    monkeypatch.setenv('PYTHONPATH', str(tmp_path / 'site'))
    data = make_demo_data(tmp_path / 'demo')
    config = write_tiny_config(tmp_path / 'tiny.py', data, iters=2, interval=2)
    work = tmp_path / 'work'
    first = run_tool(TRAIN, config, '--amp', '--work-dir', work, timeout=300)
    assert first.returncode == 0, first.stderr[-3000:]
    log = '\n'.join(p.read_text() for p in work.glob('*/*.log'))
    assert "type='CPUBF16OptimWrapper'" in log
    assert 'Training under bfloat16 autocast on the CPU' in log
    assert 'coco/bbox_mAP' in log  # validation after the last iteration (float32)
    with mmengine_checkpoints():
        checkpoint = torch.load(work / 'iter_2.pth', map_location='cpu')
    assert 'loss_scaler' not in checkpoint['optimizer']
    floats = [v for v in checkpoint['state_dict'].values() if v.is_floating_point()]
    assert floats and all(v.dtype == torch.float32 for v in floats)
    # the optimizer state of a float32 run: either resumes the other (state dict test above)


@pytest.mark.slow
def test_train_benchmark_one_round_of_tiny_models(pretend_bf16):
    from mobileone_dense.benchmark import train
    parser = argparse.ArgumentParser()
    train.add_arguments(parser)
    args = parser.parse_args(['--variants', 's0', '--seg-variants', '--no-peers', '--rounds',
                              '1', '--batch', '2', '--size', '64'])
    result = train.run(args)
    rows = {r['model']: r for r in result['rows']}
    assert list(rows) == ['SSDLite-MobileOne-S0']
    for r in rows.values():
        assert r['fp32_images_per_s'] > 0 and r['bf16_images_per_s'] > 0
        assert len(r['rounds_ms']['fp32']) == len(r['rounds_ms']['bf16']) == 1
    for name, r in rows.items():  # the ratio is the median of the per-round ratios
        fp32, bf16 = r['rounds_ms']['fp32'][0], r['rounds_ms']['bf16'][0]
        assert r['bf16_over_fp32'] == pytest.approx(fp32 / bf16), name
    assert '| SSDLite-MobileOne-S0 ' in result['table']


def test_train_benchmark_batches_hold_boxes_and_label_maps():
    from mobileone_dense.benchmark import train
    det, seg = train.batch('ssdlite', 48, 2), train.batch('deeplabv3', 48, 2, seed=1)
    assert [tuple(i.shape) for i in det['inputs']] == [(3, 48, 48)] * 2
    boxes = det['data_samples'][0].gt_instances.bboxes
    assert boxes.shape == (4, 4) and (boxes[:, 2:] > boxes[:, :2]).all()
    labels = seg['data_samples'][1].gt_sem_seg.data
    assert labels.shape == (1, 48, 48) and (labels[..., :4] == 255).all()
    assert set(labels[..., 4:].unique().tolist()) <= set(range(train.SEG_CLASSES))


def conv_output_dtype(block, x, grad=True):
    """The dtype of the first conv branch's output when ``block`` runs on ``x`` under CPU
    bfloat16 autocast (with autograd on or off)."""
    seen = []
    hook = block.rbr_conv[0].conv.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    with torch.set_grad_enabled(grad), torch.autocast('cpu', dtype=torch.bfloat16):
        out = block(x)
    hook.remove()
    return seen[0], out


def test_strided_depthwise_block_trains_in_float32_under_bf16_autocast():
    torch.manual_seed(0)
    x = torch.randn(2, 8, 16, 16).bfloat16()
    strided = MobileOneBlock(8, 8, 3, stride=2, groups=8, num_conv_branches=2).train()
    dtype, out = conv_output_dtype(strided, x)
    assert dtype == torch.float32 and out.dtype == torch.float32
    # the same block outside autocast, on the same (bfloat16-rounded) input
    torch.testing.assert_close(out, strided(x.float()))
    out.sum().backward()
    assert all(p.grad is not None and p.grad.dtype == torch.float32
               for p in strided.parameters())

    # everything else stays bfloat16: a stride-1 depthwise block, a strided dense one, and
    # the strided depthwise block when it does not train
    others = [(MobileOneBlock(8, 8, 3, stride=1, groups=8, num_conv_branches=2), True, True),
              (MobileOneBlock(8, 16, 3, stride=2, num_conv_branches=2), True, True),
              (strided, False, True), (strided, True, False)]
    for block, training, grad in others:
        block.train(training)
        assert conv_output_dtype(block, x, grad)[0] == torch.bfloat16, (block, training, grad)
