"""Draw a trained model's predictions on images: boxes with class names and scores (mmdet
configs) or a coloured mask overlay (mmseg configs), as PNG files.

    python tools/image_demo.py IMG_OR_FOLDER CONFIG CHECKPOINT [--out-dir outputs]
                               [--score-thr 0.3] [--device cpu]
    python tools/image_demo.py IMG_OR_FOLDER CONFIG MODEL.onnx|MODEL.tflite [--threads 2] ...

Runs on CPU by default and never downloads anything (the checkpoint holds every weight).
Writes OUT_DIR/<image name>.png for every image (a folder is read non-recursively).

An exported model (tools/export.py's ``model.onnx`` or a ``.tflite``) runs in its own runtime
on the CPU: each image is resized to the size the model was exported with and its predictions
are mapped back to the image, then drawn by the same visualizer, with the class names (and
colours) of the config's test dataset.
"""
from pathlib import Path

from mobileone_dense.apis import load_config
from mobileone_dense.deploy.evaluate import DeployedModel, dataset_meta, is_exported
from mobileone_dense.tasks import task_of
from mobileone_dense.utils import cli

IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff', '.webp')


def parse_args(argv=None):
    parser = cli.tool_parser(__doc__)
    parser.add_argument('inputs', help='an image file or a folder of images')
    parser.add_argument('config', help='the config the model was trained with')
    parser.add_argument('checkpoint', help='checkpoint file, or an exported model.onnx / .tflite')
    parser.add_argument('--out-dir', default='outputs', help='where the PNGs go (%(default)s)')
    parser.add_argument('--score-thr', type=float, default=0.3,
                        help='boxes scoring below this are not drawn (%(default)s)')
    parser.add_argument('--device', default='cpu', help='cpu or cuda:N (%(default)s)')
    parser.add_argument('--threads', type=int, default=2,
                        help="the exported model's runtime threads (%(default)s; .onnx and "
                             ".tflite only)")
    args = parser.parse_args(argv)
    if args.threads < 1:
        raise cli.UsageError(f'--threads must be at least 1, got {args.threads}.')
    return args


def list_images(inputs: str) -> list[Path]:
    path = Path(inputs)
    if path.is_dir():
        images = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not images:
            raise cli.UsageError(f'Folder {path} holds no images ({", ".join(IMAGE_SUFFIXES)}).')
        return images
    if not path.is_file():
        raise cli.UsageError(f'Image or folder {path} does not exist: check the path.')
    return [path]


def read_image(path: Path):
    """The image as a BGR array (what the pipelines expect), or one sentence saying it cannot
    be read."""
    import mmcv
    try:
        image = mmcv.imread(str(path))
    except Exception as e:  # mmcv raises assorted errors for corrupt files
        image, reason = None, f' ({e})'
    else:
        reason = ''
    if image is None:
        raise cli.UsageError(f'{path} is not a readable image{reason}: pass a JPEG or PNG file.')
    return image


def main(argv=None):
    args = parse_args(argv)
    images = list_images(args.inputs)
    for path in images:
        read_image(path)  # fail on a bad file before building the model
    cfg = load_config(args.config)
    task = task_of(cfg)
    if is_exported(args.checkpoint):
        if args.device != 'cpu':
            raise cli.UsageError(f'--device {args.device} applies to .pth checkpoints: an '
                                 f'exported model runs on the CPU in its own runtime; drop '
                                 f'--device.')
        infer = DeployedModel(cfg, args.checkpoint, args.threads)
        meta = dataset_meta(cfg)
        visualizer = task.visualizer(meta)
    else:
        cli.check_file(args.checkpoint, 'Checkpoint')
        model, visualizer, infer = task.inferencer(cfg, args.checkpoint, args.device)
        meta = model.dataset_meta
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    classes = meta['classes']
    for path in images:
        image = read_image(path)
        result = infer(image)
        out_file = out_dir / f'{path.stem}.png'
        visualizer.add_datasample(path.name, image[..., ::-1], data_sample=result, draw_gt=False,
                                  show=False, out_file=str(out_file),
                                  **task.draw_kwargs(args.score_thr))
        print(f'{path} -> {out_file}: {task.summary(result, classes, args.score_thr)}',
              flush=True)
    print(f'drew {len(images)} image(s) into {out_dir}/', flush=True)


if __name__ == '__main__':
    cli.run_tool_and_exit(main)
