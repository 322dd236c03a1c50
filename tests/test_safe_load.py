"""mmengine checkpoints load under torch's safe loading inside mmengine_checkpoints(), and only
there; other pickled objects are refused even there."""
import pickle

import pytest
import torch
from mmengine.dataset import DefaultSampler
from mmengine.model import BaseModel
from mmengine.runner import Runner
from torch.utils.data import Dataset

from mobileone_dense.utils.safe_load import mmengine_checkpoints


class ToyModel(BaseModel):

    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(2, 1)

    def forward(self, inputs, labels, mode='tensor'):
        out = self.linear(inputs)
        if mode == 'loss':
            return dict(loss=((out.squeeze(1) - labels)**2).mean())
        return out


class ToyData(Dataset):

    def __len__(self):
        return 8

    def __getitem__(self, i):
        return dict(inputs=torch.full((2, ), float(i)), labels=torch.tensor(float(i % 2)))


def _runner(work_dir, max_iters, resume=False):
    return Runner(
        model=ToyModel(), work_dir=str(work_dir),
        train_dataloader=dict(dataset=ToyData(), sampler=dict(type=DefaultSampler, shuffle=False),
                              batch_size=2, num_workers=0,
                              collate_fn=dict(type='default_collate')),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.01)),
        train_cfg=dict(by_epoch=False, max_iters=max_iters),
        default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=2, by_epoch=False),
                           logger=dict(type='LoggerHook', interval=1)),
        resume=resume, default_scope='mmengine')


def test_runner_checkpoint_saves_loads_and_resumes(tmp_path):
    runner = _runner(tmp_path, max_iters=2)
    runner.train()
    path = tmp_path / 'iter_2.pth'
    with mmengine_checkpoints():
        checkpoint = torch.load(path)  # torch's default: weights_only=True
    assert checkpoint['meta']['iter'] == 2
    assert 'log_scalars' in checkpoint['message_hub']

    resumed = _runner(tmp_path, max_iters=4, resume=True)
    with mmengine_checkpoints():
        resumed.train()
    assert resumed.iter == 4
    assert (tmp_path / 'iter_4.pth').exists()


def test_the_allowlist_holds_only_inside_the_context(tmp_path):
    _runner(tmp_path, max_iters=2).train()
    with pytest.raises(pickle.UnpicklingError, match='HistoryBuffer'):
        torch.load(tmp_path / 'iter_2.pth')  # what a process that imported the package sees
    with mmengine_checkpoints():
        assert torch.load(tmp_path / 'iter_2.pth')['meta']['iter'] == 2


class Payload:
    pass


class Sneaky:

    def __reduce__(self):
        import numpy as np
        return getattr, (np.ndarray, 'tofile')  # a file-writing method of an allowed class


def test_getattr_is_limited_to_history_buffer(tmp_path):
    path = tmp_path / 'sneaky.pth'
    torch.save({'x': Sneaky()}, path)
    with pytest.raises(pickle.UnpicklingError), mmengine_checkpoints():
        torch.load(path)


def test_other_pickled_objects_are_still_refused(tmp_path):
    path = tmp_path / 'evil.pth'
    torch.save({'state_dict': {}, 'payload': Payload()}, path)
    with pytest.raises(pickle.UnpicklingError, match='Weights only load failed'), \
            mmengine_checkpoints():
        torch.load(path)
