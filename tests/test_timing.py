"""time_side_by_side on a fake clock: what it times and how it interleaves."""
import pytest

from mobileone_dense.benchmark import timing


class FakeRuntimes:
    """Candidates whose call costs 10 ms right after another candidate ran (cores still held by
    the other's thread pool) and 1 ms when the same candidate ran just before."""

    def __init__(self, monkeypatch, names):
        self.now, self.last, self.calls = 0.0, None, []
        monkeypatch.setattr(timing.time, 'perf_counter', lambda: self.now)
        self.fns = {n: (lambda n=n: self.call(n)) for n in names}

    def call(self, name):
        self.now += 0.001 if self.last == name else 0.010
        self.last = name
        self.calls.append(name)


@pytest.mark.parametrize('settle, expected_ms', [(1, 1.0), (2, 1.0), (0, 10.0)])
def test_settling_calls_time_the_steady_state(monkeypatch, settle, expected_ms):
    fake = FakeRuntimes(monkeypatch, ['torch', 'onnx', 'sgemm'])
    result = timing.time_side_by_side(fake.fns, rounds=6, warmup=1, settle=settle,
                                      progress=False)
    for name in fake.fns:
        assert result[name]['median_ms'] == pytest.approx(expected_ms)
        assert result[name]['min_ms'] == pytest.approx(expected_ms)
        assert fake.calls.count(name) == 1 + 6 * (1 + settle)


def test_rounds_rotate_the_order(monkeypatch):
    fake = FakeRuntimes(monkeypatch, ['a', 'b', 'c'])
    timing.time_side_by_side(fake.fns, rounds=3, warmup=0, settle=0, progress=False)
    assert fake.calls == ['a', 'b', 'c', 'b', 'c', 'a', 'c', 'a', 'b']


def test_each_candidate_can_have_its_own_settling_count(monkeypatch):
    fake = FakeRuntimes(monkeypatch, ['model', 'sgemm', 'other'])
    result = timing.time_side_by_side(fake.fns, rounds=4, warmup=0,
                                      settle=dict(model=3, sgemm=0, other=1), progress=False)
    assert [fake.calls.count(n) for n in ('model', 'sgemm', 'other')] == [16, 4, 8]
    assert result['model']['median_ms'] == pytest.approx(1.0)
    assert result['sgemm']['median_ms'] == pytest.approx(10.0)


@pytest.mark.parametrize('inference', [True, False])
def test_training_steps_time_with_autograd(monkeypatch, inference):
    """The same loop times training steps (``inference=False``): a backward pass works there,
    and one round is enough (``--train-rounds 1``)."""
    import torch
    fake = FakeRuntimes(monkeypatch, ['step'])
    model = torch.nn.Linear(3, 1)

    def step():
        fake.call('step')
        model(torch.ones(1, 3)).sum().backward()

    if inference:
        with pytest.raises(RuntimeError):
            timing.time_side_by_side({'step': step}, rounds=1, warmup=0, settle=0,
                                     progress=False)
        return
    result = timing.time_side_by_side({'step': step}, rounds=1, warmup=1, settle=0,
                                      progress=False, inference=False)
    assert result['step']['median_ms'] == pytest.approx(1.0)  # the second call in a row
    assert result['step']['iqr_ms'] == 0 and fake.calls == ['step', 'step']
    assert model.weight.grad is not None


class Hiccups:
    """A candidate whose calls cost 1 ms, except every ``every``-th call, which a burst of load
    from elsewhere stretches to 50 ms."""

    def __init__(self, monkeypatch, every):
        self.now, self.count, self.every = 0.0, 0, every
        monkeypatch.setattr(timing.time, 'perf_counter', lambda: self.now)

    def __call__(self):
        self.count += 1
        self.now += 0.050 if self.count % self.every == 0 else 0.001


@pytest.mark.parametrize('calls, expected_ms', [(1, 50.0), (5, 1.0)])
def test_timed_calls_of_a_round_give_their_median(monkeypatch, calls, expected_ms):
    """With one timed call a round, a hiccup that hits it is the round's time; the median of
    several timed calls is not swayed by one."""
    fake = Hiccups(monkeypatch, every=6)  # with settle=5 and one call: every timed call
    result = timing.time_side_by_side({'m': fake}, rounds=4, warmup=0, settle=5,
                                      calls=calls, progress=False)
    assert result['m']['rounds_ms'] == pytest.approx([expected_ms] * 4)
    assert fake.count == 4 * (5 + calls)


def test_each_candidate_can_have_its_own_timed_calls(monkeypatch):
    fake = FakeRuntimes(monkeypatch, ['model', 'other'])
    timing.time_side_by_side(fake.fns, rounds=2, warmup=0, settle=1,
                             calls=dict(model=3, other=1), progress=False)
    assert [fake.calls.count(n) for n in ('model', 'other')] == [8, 4]
    with pytest.raises(ValueError, match='at least one timed call'):
        timing.time_side_by_side(fake.fns, rounds=1, warmup=0, calls=0, progress=False)
