"""``tools/benchmark.py segmentor`` on a tiny input: every model runs, the table and the dict
report the segmentor, its backbone and their ratios consistently."""
import argparse

import pytest

from mobileone_dense.benchmark import segmentor


def test_segmentor_benchmark_reports_backbone_share(capsys):
    parser = argparse.ArgumentParser()
    segmentor.add_arguments(parser)
    args = parser.parse_args(['--variants', 's0', '--size', '64', '--rounds', '2',
                              '--warmup', '0'])
    result = segmentor.run(args)
    printed = capsys.readouterr().out
    assert '| MobileOne-S0' in printed and f'| {segmentor.PEER}' in printed
    assert result['size'] == 64 and [r['variant'] for r in result['rows']] == ['s0']
    row = result['rows'][0]
    for state in ('train_time', 'fused'):
        r = row[state]
        assert r['segmentor_ms'] > 0 and r['backbone_ms'] > 0
        assert r['head_ms'] == pytest.approx(r['segmentor_ms'] - r['backbone_ms'])
        assert r['backbone_share'] == pytest.approx(r['backbone_ms'] / r['segmentor_ms'])
    assert row['speedup'] == pytest.approx(row['train_time']['segmentor_ms']
                                           / row['fused']['segmentor_ms'])
    assert set(result['raw']) == {f'{m}{part}' for m in (segmentor.PEER, 's0 train-time',
                                                          's0 fused')
                                  for part in ('', ' backbone')}


def test_peer_is_mmsegs_mobilenetv2_deeplabv3_without_download():
    model = segmentor.mobilenet_v2_segmentor()
    assert type(model.backbone).__name__ == 'MobileNetV2'
    assert type(model.decode_head).__name__ == 'ASPPHead'
    assert model.decode_head.in_channels == 320 and model.decode_head.num_classes == 21
