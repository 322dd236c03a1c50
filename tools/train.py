"""Train a detector or a segmentor (the config's ``default_scope`` picks mmdet or mmseg).

    python tools/train.py CONFIG [--work-dir DIR] [--resume [CHECKPOINT]] [--amp]
                          [--auto-scale-lr] [--cfg-options KEY=VALUE ...]
    bash tools/dist_train.sh CONFIG NUM_GPUS_OR_PROCESSES [same options]

Checkpoints and logs go to ``--work-dir`` (default ``work_dirs/<config name>``). ``--resume``
alone continues from the last checkpoint there; ``--resume PATH`` from that checkpoint.
"""
import argparse
import os
import os.path as osp
import sys

from mmengine.config import DictAction

from mobileone_dense.utils import cli
from mobileone_dense.utils.data_check import check_datasets


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config', help='train config file')
    parser.add_argument('--work-dir', help='where checkpoints and logs go')
    parser.add_argument('--resume', nargs='?', const='auto', metavar='CHECKPOINT',
                        help='resume from CHECKPOINT, or from the last one in the work dir')
    parser.add_argument('--amp', action='store_true', help='automatic mixed precision (GPU)')
    parser.add_argument('--auto-scale-lr', action='store_true',
                        help="scale the lr from the config's auto_scale_lr.base_batch_size "
                             'to the batch you train with')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, default={},
                        help='override config entries, e.g. train_dataloader.batch_size=8')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm'], default='none',
                        help='job launcher (tools/dist_train.sh uses pytorch)')
    parser.add_argument('--local-rank', '--local_rank', type=int, default=0,
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def main(argv=None):
    args = parse_args(argv)
    cfg = cli.load_config(args.config, args.cfg_options)
    cfg.launcher = args.launcher
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('work_dirs', osp.splitext(osp.basename(args.config))[0])

    if args.amp:
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.loss_scale = 'dynamic'
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

    loaders = ['train_dataloader'] + (['val_dataloader'] if cfg.get('val_cfg') else [])
    check_datasets(cfg, loaders)
    cli.setup_cpu_distributed(cfg, args.launcher)

    from mmengine.registry import RUNNERS
    from mmengine.runner import Runner
    runner = Runner.from_cfg(cfg) if 'runner_type' not in cfg else RUNNERS.build(cfg)
    runner.train()
    del runner  # its DDP wrapper holds the process group
    cli.close_distributed()


if __name__ == '__main__':
    sys.exit(cli.run_tool(main))
