"""Evaluate a trained detector (COCO box mAP) or segmentor (mIoU) on the config's test split.

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--show-dir DIR] [--out FILE.pkl]
                         [--cfg-options KEY=VALUE ...]

The metric is the config's ``test_evaluator`` (mmdet's ``CocoMetric`` for the SSDLite configs,
printed as pycocotools' usual table). The metrics are also written, as JSON, to
``WORK_DIR/test_metrics.json``. ``--show-dir`` draws every prediction into that folder;
``--out`` pickles the raw predictions. Nothing is downloaded: the checkpoint holds all weights.
"""
import json
import os.path as osp
import sys

from mobileone_dense.apis import check_checkpoint_file, drop_pretrained
from mobileone_dense.datasets import check_datasets, reading_annotations
from mobileone_dense.tasks import task_of
from mobileone_dense.transforms import use_checked_image_loading
from mobileone_dense.utils import cli


def parse_args(argv=None):
    parser = cli.tool_parser(__doc__)
    parser.add_argument('config', help='test config file')
    parser.add_argument('checkpoint', help='checkpoint file (tools/train.py writes them)')
    parser.add_argument('--show-dir', help='draw the predictions into this folder')
    parser.add_argument('--out', help='pickle the raw predictions to this .pkl file')
    cli.add_runner_arguments(parser, 'test_dataloader.batch_size=1')
    args = parser.parse_args(argv)
    if args.out is not None and not args.out.endswith(('.pkl', '.pickle')):
        raise cli.UsageError(f'--out {args.out} must end in .pkl: the predictions are pickled.')
    return args


def show_predictions(cfg, show_dir: str) -> None:
    """Switch on the config's visualization hook so that it draws into ``show_dir``."""
    hook = cfg.get('default_hooks', {}).get('visualization')
    if hook is None:
        raise cli.UsageError("--show-dir needs default_hooks.visualization in the config, e.g. "
                             "visualization=dict(type='DetVisualizationHook').")
    task_of(cfg).show_predictions(cfg, show_dir)


def main(argv=None):
    args = parse_args(argv)
    cfg = cli.runner_config(args)
    check_checkpoint_file(args.checkpoint)
    cfg.load_from = args.checkpoint
    drop_pretrained(cfg)  # the checkpoint has every weight; no download
    if args.show_dir:
        show_predictions(cfg, args.show_dir)
    check_datasets(cfg, ['test_dataloader'])
    use_checked_image_loading(cfg, ['test_dataloader'], skip_unreadable=False)  # one sentence
    cli.setup_cpu_distributed(cfg, args.launcher)

    from mmengine.registry import RUNNERS
    from mmengine.runner import Runner
    with reading_annotations(cfg, ['test_dataloader']):
        runner = Runner.from_cfg(cfg) if 'runner_type' not in cfg else RUNNERS.build(cfg)
        if args.out is not None:
            runner.test_evaluator.metrics.append(task_of(cfg).dump_metric(args.out))
        metrics, rank = runner.test(), runner.rank
    del runner  # its DDP wrapper holds the process group
    cli.close_distributed()

    if rank == 0:
        path = osp.join(cfg.work_dir, 'test_metrics.json')
        with open(path, 'w') as f:
            # mmseg's IoUMetric reports numpy floats, which json cannot write as they are.
            json.dump(dict(config=args.config, checkpoint=args.checkpoint, metrics=metrics), f,
                      indent=2, default=float)
        print(f'metrics written to {path}', flush=True)
        if args.show_dir:
            print(f'pictures drawn under {args.show_dir}', flush=True)


if __name__ == '__main__':
    sys.exit(cli.run_tool(main))
