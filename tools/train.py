"""Train a detector or a segmentor (the config's ``default_scope`` picks mmdet or mmseg).

    python tools/train.py CONFIG [--work-dir DIR] [--resume [CHECKPOINT]] [--amp]
                          [--auto-scale-lr] [--cfg-options KEY=VALUE ...]
    bash tools/dist_train.sh CONFIG NUM_GPUS_OR_PROCESSES [same options]

Checkpoints and logs go to ``--work-dir`` (default ``work_dirs/<config name>``). ``--resume``
alone continues from the last checkpoint there; ``--resume PATH`` from that checkpoint.
"""
import glob
import os.path as osp
import zipfile

from mobileone_dense.apis import check_checkpoint_file
from mobileone_dense.datasets import check_datasets, reading_annotations
from mobileone_dense.engine.runner import (
    add_runner_arguments,
    close_distributed,
    runner_config,
    setup_cpu_distributed,
    stop_dataloader_workers,
)
from mobileone_dense.transforms import use_checked_image_loading
from mobileone_dense.utils import cli
from mobileone_dense.utils.safe_load import mmengine_checkpoints


def parse_args(argv=None):
    parser = cli.tool_parser(__doc__)
    parser.add_argument('config', help='train config file')
    parser.add_argument('--resume', nargs='?', const='auto', metavar='CHECKPOINT',
                        help='resume from CHECKPOINT, or from the last one in the work dir')
    parser.add_argument('--amp', action='store_true',
                        help='mixed precision: float16 with a loss scaler on a GPU, bfloat16 '
                             'on a CPU that has bfloat16 instructions (AVX512-BF16, AMX)')
    parser.add_argument('--auto-scale-lr', action='store_true',
                        help="scale the lr from the config's auto_scale_lr.base_batch_size "
                             'to the batch you train with')
    parser.add_argument('--progress', action='store_true',
                        help='one progress line (iteration, loss, s/iteration, ETA) instead of '
                             "mmengine's log lines on the console; the work dir keeps the log")
    add_runner_arguments(parser, 'train_dataloader.batch_size=8')
    return parser.parse_args(argv)


def check_newest_checkpoint(work_dir: str) -> None:
    """Say in one sentence, before anything is built, that the checkpoint ``--resume`` alone
    would continue from (the one ``WORK_DIR/last_checkpoint`` names) was cut short, and name an
    earlier one: mmengine would stop in ``torch.load``, and silently falling back to an older
    checkpoint would hide that iterations are lost."""
    from mmengine.runner.checkpoint import find_latest_checkpoint
    newest = find_latest_checkpoint(work_dir) if osp.isdir(work_dir) else None
    if not newest or '://' in newest or not osp.isfile(newest):
        return
    earlier = sorted((p for p in glob.glob(osp.join(work_dir, '*.pth'))
                      if not osp.samefile(p, newest) and zipfile.is_zipfile(p)),
                     key=osp.getmtime, reverse=True)
    advice = (f'pass an earlier one with --resume PATH, e.g. --resume {earlier[0]}' if earlier
              else 'there is no earlier one, so train without --resume to start over')
    check_checkpoint_file(newest, fix=(
        f'it is the newest checkpoint in {work_dir}, the one --resume alone continues from, and '
        f'was probably cut short while being saved; --resume does not fall back to an older '
        f'checkpoint by itself: {advice}'))


def main(argv=None):
    args = parse_args(argv)
    cfg = runner_config(args)

    if args.amp:
        import torch
        if torch.cuda.is_available():  # float16 autocast with a dynamic loss scale
            cfg.optim_wrapper.type = 'AmpOptimWrapper'
            cfg.optim_wrapper.loss_scale = 'dynamic'
        else:  # bfloat16 autocast, float32 weights and loss, no loss scale
            from mobileone_dense.engine import require_cpu_bf16
            require_cpu_bf16('train without --amp')
            cfg.optim_wrapper.type = 'CPUBF16OptimWrapper'
            cfg.optim_wrapper.pop('loss_scale', None)
    if args.auto_scale_lr:
        if 'base_batch_size' not in cfg.get('auto_scale_lr', {}):
            raise cli.UsageError(f'--auto-scale-lr needs auto_scale_lr.base_batch_size in '
                             f'{args.config}: add auto_scale_lr = dict(base_batch_size=N).')
        cfg.auto_scale_lr.enable = True
    if args.resume == 'auto':
        cfg.resume, cfg.load_from = True, None
    elif args.resume is not None:
        cli.check_file(args.resume, 'Checkpoint to resume from')
        cfg.resume, cfg.load_from = True, args.resume
    if cfg.get('load_from'):  # --resume PATH, or the config's load_from
        check_checkpoint_file(cfg.load_from)
    elif cfg.get('resume'):
        check_newest_checkpoint(cfg.work_dir)

    loaders = ['train_dataloader'] + (['val_dataloader'] if cfg.get('val_cfg') else [])
    check_datasets(cfg, loaders)
    # An unreadable training image is skipped with a warning; validation stops on one.
    use_checked_image_loading(cfg, ['train_dataloader'], skip_unreadable=True)
    use_checked_image_loading(cfg, ['val_dataloader'], skip_unreadable=False)
    setup_cpu_distributed(cfg, args.launcher)
    if args.progress:  # importing the hook's module registers it
        from mobileone_dense.engine.progress import ProgressBarHook
        cfg.custom_hooks = [*cfg.get('custom_hooks', []), dict(type=ProgressBarHook.__name__)]

    from mmengine.registry import RUNNERS
    from mmengine.runner import Runner
    with reading_annotations(cfg, loaders), mmengine_checkpoints():
        runner = Runner.from_cfg(cfg) if 'runner_type' not in cfg else RUNNERS.build(cfg)
        runner.train()
    stop_dataloader_workers(runner)
    del runner  # its DDP wrapper holds the process group
    close_distributed()


if __name__ == '__main__':
    cli.run_tool_and_exit(main)
