"""Evaluate a trained detector (COCO box mAP) or segmentor (mIoU) on the config's test split,
from its checkpoint or from an exported model.

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--show-dir DIR] [--out FILE.pkl]
                         [--cfg-options KEY=VALUE ...]
    python tools/test.py CONFIG MODEL.onnx|MODEL.tflite [--threads 2] [--work-dir DIR]
                         [--client toolkit|mediapipe] [--show-dir DIR] [--out FILE.pkl]
                         [--cfg-options KEY=VALUE ...]

The metric is the config's ``test_evaluator`` (mmdet's ``CocoMetric`` for the SSDLite configs,
printed as pycocotools' usual table). The metrics are also written, as JSON, to
``WORK_DIR/test_metrics.json``. ``--show-dir`` draws every prediction into that folder;
``--out`` pickles the raw predictions. Nothing is downloaded: the checkpoint holds all weights.

An exported model (``model.onnx`` or a ``.tflite`` of tools/export.py) runs in its own runtime
(ONNX Runtime, LiteRT) with ``--threads`` threads, in one process, over the images of the same
test pipeline, at the size it was exported with; its predictions are mapped back to the original
images and scored by the same evaluator, so the metrics of a format and of its checkpoint compare
directly (the JSON also names the model and the runtime). The config gives the classes and, for
a ``.tflite`` detector, which ends at per-anchor boxes and scores, the selection and NMS that
follow (run in PyTorch, as the ONNX graph runs them inside). ``--out`` pickles the same
predictions as for a checkpoint; ``--show-dir`` draws each image's ground truth and predictions
into DIR/<image name>. ``--launcher`` does not apply: the runtime runs in this one process.
``--client mediapipe`` runs a ``.tflite`` in MediaPipe Tasks instead (ObjectDetector or
ImageSegmenter, as Android, iOS and web apps run it, with the file's own metadata and
MediaPipe's decoding and NMS) and scores what it returns.
"""
import json
import os
import os.path as osp
import time

from mobileone_dense.apis import check_checkpoint_file, drop_pretrained
from mobileone_dense.datasets import check_datasets, reading_annotations
from mobileone_dense.deploy.evaluate import DeployedModel, evaluate_deployed, is_exported
from mobileone_dense.deploy.mediapipe_client import MediaPipeModel
from mobileone_dense.engine.runner import (
    add_runner_arguments,
    close_distributed,
    runner_config,
    setup_cpu_distributed,
    stop_dataloader_workers,
)
from mobileone_dense.tasks import task_of
from mobileone_dense.transforms import use_checked_image_loading
from mobileone_dense.utils import cli
from mobileone_dense.utils.safe_load import mmengine_checkpoints


def parse_args(argv=None):
    parser = cli.tool_parser(__doc__)
    parser.add_argument('config', help='test config file')
    parser.add_argument('checkpoint', help='checkpoint file (tools/train.py writes them), or '
                                           'an exported model.onnx / .tflite')
    parser.add_argument('--show-dir', help='draw the predictions into this folder')
    parser.add_argument('--out', help='pickle the raw predictions to this .pkl file')
    parser.add_argument('--threads', type=int, default=2,
                        help="the exported model's runtime threads (%(default)s; .onnx and "
                             ".tflite only)")
    parser.add_argument('--client', choices=('toolkit', 'mediapipe'), default='toolkit',
                        help="who runs an exported .tflite: this toolkit (LiteRT, mmdet's "
                             "selection and NMS) or MediaPipe Tasks, as apps do (its decoding "
                             "and NMS)")
    add_runner_arguments(parser, 'test_dataloader.batch_size=1')
    args = parser.parse_args(argv)
    if args.out is not None and not args.out.endswith(('.pkl', '.pickle')):
        raise cli.UsageError(f'--out {args.out} must end in .pkl: the predictions are pickled.')
    if args.client == 'mediapipe' and not args.checkpoint.endswith('.tflite'):
        raise cli.UsageError(f'--client mediapipe runs LiteRT files: give a .tflite of '
                             f'tools/export.py, not {args.checkpoint}.')
    if args.threads < 1:
        raise cli.UsageError(f'--threads must be at least 1, got {args.threads}.')
    return args


def show_predictions(cfg, show_dir: str) -> None:
    """Switch on the config's visualization hook so that it draws into ``show_dir``."""
    hook = cfg.get('default_hooks', {}).get('visualization')
    if hook is None:
        raise cli.UsageError("--show-dir needs default_hooks.visualization in the config, e.g. "
                             "visualization=dict(type='DetVisualizationHook').")
    task_of(cfg).show_predictions(cfg, show_dir)


def write_metrics(cfg, metrics: dict, **names) -> None:
    """``WORK_DIR/test_metrics.json``: what was evaluated (``names``) and its metrics."""
    path = osp.join(cfg.work_dir, 'test_metrics.json')
    os.makedirs(cfg.work_dir, exist_ok=True)
    with open(path, 'w') as f:
        # mmseg's IoUMetric reports numpy floats, which json cannot write as they are.
        json.dump(dict(**names, metrics=metrics), f, indent=2, default=float)
    print(f'metrics written to {path}', flush=True)


def test_exported(args, cfg) -> None:
    """Evaluate an exported model (see the module doc) in this process."""
    from mmengine.logging import MMLogger
    if args.launcher != 'none':
        raise cli.UsageError(f'--launcher {args.launcher} spreads a checkpoint over processes; '
                             f'an exported model runs in one process: drop --launcher and set '
                             f'--threads.')
    client = MediaPipeModel if args.client == 'mediapipe' else DeployedModel
    model = client(cfg, args.checkpoint, args.threads)  # a bad file: one sentence, now
    check_datasets(cfg, ['test_dataloader'])  # and missing data, before the log is opened
    timestamp = time.strftime('%Y%m%d_%H%M%S', time.localtime())
    os.makedirs(osp.join(cfg.work_dir, timestamp), exist_ok=True)
    logger = MMLogger.get_instance(f'test_exported_{timestamp}', log_level='INFO',
                                   log_file=osp.join(cfg.work_dir, timestamp, f'{timestamp}.log'))
    extra = [task_of(cfg).dump_metric(args.out)] if args.out is not None else []
    try:
        metrics = evaluate_deployed(cfg, model, metrics=extra, show_dir=args.show_dir,
                                    logger=logger)
    finally:
        getattr(model, 'close', lambda: None)()  # MediaPipe's graph, before interpreter exit
    runtime = model.runtime_name
    logger.info(f'{runtime} {args.checkpoint}: ' +
                '  '.join(f'{k}: {v:.4f}' if isinstance(v, float) else f'{k}: {v}'
                          for k, v in metrics.items()))
    write_metrics(cfg, metrics, config=args.config, checkpoint=args.checkpoint,
                  model=args.checkpoint, runtime=runtime)
    if args.show_dir:
        print(f'pictures drawn under {args.show_dir}', flush=True)


def main(argv=None):
    args = parse_args(argv)
    cfg = runner_config(args)
    if is_exported(args.checkpoint):
        return test_exported(args, cfg)
    check_checkpoint_file(args.checkpoint)
    cfg.load_from = args.checkpoint
    drop_pretrained(cfg)  # the checkpoint has every weight; no download
    if args.show_dir:
        show_predictions(cfg, args.show_dir)
    check_datasets(cfg, ['test_dataloader'])
    use_checked_image_loading(cfg, ['test_dataloader'], skip_unreadable=False)  # one sentence
    setup_cpu_distributed(cfg, args.launcher)

    from mmengine.registry import RUNNERS
    from mmengine.runner import Runner
    with reading_annotations(cfg, ['test_dataloader']), mmengine_checkpoints():
        runner = Runner.from_cfg(cfg) if 'runner_type' not in cfg else RUNNERS.build(cfg)
        if args.out is not None:
            runner.test_evaluator.metrics.append(task_of(cfg).dump_metric(args.out))
        metrics, rank = runner.test(), runner.rank
    stop_dataloader_workers(runner)
    del runner  # its DDP wrapper holds the process group
    close_distributed()

    if rank == 0:
        write_metrics(cfg, metrics, config=args.config, checkpoint=args.checkpoint)
        if args.show_dir:
            print(f'pictures drawn under {args.show_dir}', flush=True)


if __name__ == '__main__':
    cli.run_tool_and_exit(main)
