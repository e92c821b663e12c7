"""`nlflow` command line: the demo generators, weight conversion and inspection, prediction, export
and video features."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from nlflow.demo.layouts import DEFAULT_NUM_FRAMES, FORMATS
from nlflow.errors import NlflowError, one_line
from nlflow.evaluate.metrics import AGGREGATES
from nlflow.logs import setup_logging


def _demo(args: argparse.Namespace) -> int:
    from nlflow.demo.dataset import generate_demo

    summary = generate_demo(
        args.out_dir, seed=args.seed, num_frames=args.num_frames, clips_per_group=args.clips_per_group,
        draw_frame_index=args.draw_frame_index, layout=args.format,
    )
    print(summary)
    return 0


def _scale_demo(args: argparse.Namespace) -> int:
    if args.kind == "kinetics400":
        from nlflow.demo.kinetics_scale import generate_kinetics_scale

        print(generate_kinetics_scale(args.out_dir, args.fraction, seed=args.seed, n_jobs=args.jobs, resume=args.resume))
        return 0
    from nlflow.demo.scale import generate_scale_demo

    summary = generate_scale_demo(args.out_dir, args.fraction, seed=args.seed, n_jobs=args.jobs, solid=args.solid)
    print(summary)
    return 0


def _target_network(args: argparse.Namespace):
    """The network ``--network`` (a released model's) or ``--config`` (a workflow config's) names; None: inferred."""
    from nlflow.weights.zoo import network_of_config, zoo_model

    if args.network:
        return zoo_model(args.network).model_config(num_classes=args.num_classes or 400)
    if args.config:
        import yaml

        try:
            config = yaml.safe_load(open(args.config, encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            raise NlflowError(f"cannot read --config {args.config}: {one_line(exc)}") from None
        dataset = (config or {}).get("dataset") or {}
        count = args.num_classes or dataset.get("num_classes") or 400
        return network_of_config(config or {}, count)
    return None


def _weights_convert(args: argparse.Namespace) -> int:
    from nlflow.weights.convert import convert_caffe2_to_checkpoint

    report = convert_caffe2_to_checkpoint(
        args.src, args.dst, model_cfg=_target_network(args), num_classes=args.num_classes, drop_head=args.drop_head,
        keep_bn_stats=not args.drop_bn_stats, zoo_name=args.zoo_name, init_missing_nonlocal=True,
    )
    print(report.summary())
    for note in report.notes:
        print(f"note: {note}")
    return 0


def _weights_list(args: argparse.Namespace) -> int:
    from nlflow.weights.zoo import format_zoo_table

    print(format_zoo_table())
    return 0


def _weights_inspect(args: argparse.Namespace) -> int:
    from nlflow.weights.convert import inspect_weights

    print(inspect_weights(args.file))
    return 0


def _predict(args: argparse.Namespace) -> int:
    from nlflow.predict import format_predictions, predict_videos

    checkpoint = args.checkpoint
    if args.model is not None:
        from nlflow.weights.cache import released_checkpoint

        checkpoint = released_checkpoint(args.model)
    predictions = predict_videos(args.videos, checkpoint, topk=args.topk, views=args.views,
                                 aggregate=args.aggregate, amp=args.amp)
    print(format_predictions(predictions, as_json=args.json))
    failed = [p for p in predictions if p.error]
    if failed:
        print(f"nlflow predict: {len(failed)} of {len(predictions)} videos failed", file=sys.stderr)
    return 1 if failed else 0


def _export(args: argparse.Namespace) -> int:
    from nlflow.export.exporter import export_checkpoint

    report = export_checkpoint(args.checkpoint, args.out, formats=args.formats)
    print(report.summary())
    return 0


def _features(args: argparse.Namespace) -> int:
    from nlflow.features.extract import file_features

    summary = file_features(args.videos, args.checkpoint, args.output, per_clip=args.per_clip, views=args.views,
                            batch_size=args.batch_size, cache_path=args.cache)
    print(f"{summary['rows']} rows for {summary['videos']} videos -> {args.output}")
    if summary["failed"]:
        print(f"nlflow features: {len(summary['failed'])} of {summary['videos']} videos have no features "
              "(their rows' error column says why)", file=sys.stderr)
    return 1 if summary["failed"] else 0


def _plan(args: argparse.Namespace) -> int:
    from nlflow.workflow.config import load_config
    from nlflow.workflow.plan import format_plan

    config = load_config(args.configfile)
    print(format_plan(config, cores=args.cores, link_bytes_per_s=args.link_mb_per_s * 1e6))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nlflow", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser("demo", help="generate the embedded demo dataset (UCF-101, HMDB-51 or folder layout)")
    demo.add_argument("out_dir", help="folder for the archives (or videos/ tree) and demo_manifest.json")
    demo.add_argument("--format", choices=FORMATS, default="ucf101",
                      help="ucf101: UCF101.rar + split zip; hmdb51: hmdb51_org.rar (one RAR per class) + "
                           "test_train_splits.rar; folder: videos/<class>/<video>; kinetics_cvdf / kinetics_folders: "
                           "kinetics400/ as the CVDF mirror or in class folders, with annotations/*.csv (default ucf101)")
    demo.add_argument("--seed", type=int, default=0, help="random seed of the videos (default 0)")
    demo.add_argument("--num-frames", type=int, default=DEFAULT_NUM_FRAMES,
                      help=f"frames per video (default {DEFAULT_NUM_FRAMES})")
    demo.add_argument("--clips-per-group", type=int, default=2, help="videos per class and group (default 2)")
    demo.add_argument("--draw-frame-index", action="store_true", help="draw each frame's index into it")
    demo.set_defaults(func=_demo)

    scale = commands.add_parser("scale-demo", help="generate a UCF-101- or Kinetics-400-shaped dataset at a fraction of the real size")
    scale.add_argument("out_dir", help="ucf101: folder for UCF101.rar, the split zip and scale_manifest.json; "
                       "kinetics400: the copy's root (CVDF layout), for dataset.root")
    scale.add_argument("--kind", choices=("ucf101", "kinetics400"), default="ucf101", help="which dataset's shape (default ucf101)")
    scale.add_argument("--fraction", type=float, required=True,
                       help="share of the real set: UCF-101's 13,320 videos, or Kinetics-400's 246,535 train and 19,882 val rows")
    scale.add_argument("--resume", action="store_true", help="kinetics400: keep the videos an earlier run left in out_dir "
                       "(a smaller fraction grows into a larger one)")
    scale.add_argument("--seed", type=int, default=0, help="random seed of the set (default 0)")
    scale.add_argument("--jobs", type=int, default=None, help="rendering processes (default: all cores)")
    scale.add_argument("--solid", action="store_true", help="ucf101: a solid, compressed RAR instead of a stored one")
    scale.set_defaults(func=_scale_demo)

    weights = commands.add_parser("weights", help="Caffe2 weight files").add_subparsers(dest="action", required=True)
    convert = weights.add_parser("convert", help="Caffe2 .pkl -> nlflow PyTorch checkpoint")
    convert.add_argument("src", help="a Caffe2 weight file (.pkl), e.g. a released Kinetics model")
    convert.add_argument("dst", help="where to write the nlflow checkpoint (.pt)")
    convert.add_argument("--num-classes", type=int, default=None, help="classes of the new head")
    convert.add_argument("--drop-head", action="store_true", help="drop pred_* and initialise a new head")
    convert.add_argument("--drop-bn-stats", action="store_true", help="drop BN running statistics (_rm, _riv)")
    convert.add_argument("--zoo-name", default=None,
                         help="the released model or starting point this file is (clip shape, stem); default: "
                              "matched by file name")
    target = convert.add_mutually_exclusive_group()
    target.add_argument("--network", default=None,
                        help="convert into this released model's network (e.g. inflate an ImageNet file into "
                             "i3d_nonlocal_8x8_IN_pretrain_400k's I3D-NL); default: the file's own network")
    target.add_argument("--config", default=None,
                        help="convert into the network of this workflow config (its model and pretrained sections)")
    convert.set_defaults(func=_weights_convert)
    listing = weights.add_parser("list", help="the released Kinetics models (the model zoo)")
    listing.set_defaults(func=_weights_list)
    inspect = weights.add_parser("inspect", help="list blobs/tensors, shapes and what cleaning drops")
    inspect.add_argument("file", help="a Caffe2 .pkl or an nlflow .pt")
    inspect.set_defaults(func=_weights_inspect)

    plan = commands.add_parser("plan", help="estimated disk and time per stage for a config, before anything runs")
    plan.add_argument("--configfile", default="config/config.yaml", help="the config (default config/config.yaml)")
    plan.add_argument("--cores", type=int, default=os.cpu_count() or 1, help="cores of the run (default: this machine's)")
    plan.add_argument("--link-mb-per-s", type=float, default=10.0,
                      help="download speed from the dataset's server in MB/s (default 10)")
    plan.set_defaults(func=_plan)

    predict = commands.add_parser("predict", help="classify raw video files with a trained checkpoint")
    predict.add_argument("videos", nargs="+", help="video files (any container and codec PyAV reads)")
    network = predict.add_mutually_exclusive_group(required=True)
    network.add_argument("--checkpoint",
                         help="an nlflow checkpoint (e.g. results/train/model_final.pt) or a network made by "
                              "`nlflow export` (.onnx runs with onnxruntime, .pt2 with torch.export)")
    network.add_argument("--model", help="a released Kinetics-400 model by name (`nlflow weights list`), downloaded "
                                         "and converted on first use into the cache ($NLFLOW_CACHE, else ~/.cache/nlflow)")
    predict.add_argument("--topk", type=int, default=5, help="how many classes to print per video (default 5)")
    predict.add_argument("--views", type=int, choices=(30, 3, 1), default=30,
                         help="30: 10 clips x 3 crops (the test protocol); 3: 3 clips x centre crop; 1: one clip")
    predict.add_argument("--aggregate", choices=tuple(AGGREGATES), default="mean_softmax",
                         help="how the views' scores combine; use the config's test.aggregate to match evaluate")
    predict.add_argument("--amp", choices=("none", "bf16"), default="none",
                         help="none: float32 (the original's precision); bf16: autocast, faster on a GPU")
    predict.add_argument("--json", action="store_true", help="machine-readable output")
    predict.set_defaults(func=_predict)

    export = commands.add_parser("export", help="the test-mode network as OUT.onnx and OUT.pt2, checked against the checkpoint")
    export.add_argument("checkpoint", help="an nlflow checkpoint, e.g. results/train/model_final.pt")
    export.add_argument("out", help="OUT: writes OUT.onnx and OUT.pt2")
    export.add_argument("--formats", nargs="+", choices=("onnx", "pt2"), default=["onnx", "pt2"],
                        help="what to write (default both; onnx needs the export extra: pip install -e \".[export]\")")
    export.set_defaults(func=_export)

    features = commands.add_parser("features", help="one embedding per video (pool5 averaged over the test views)")
    features.add_argument("videos", nargs="+", help="video files (any container and codec PyAV reads)")
    features.add_argument("--checkpoint", required=True, help="an nlflow checkpoint, e.g. results/train/model_final.pt")
    features.add_argument("-o", "--output", required=True,
                          help="the features file (.parquet: video, label, class, feature, error; needs the "
                               "features extra: pip install -e \".[features]\")")
    features.add_argument("--per-clip", action="store_true", help="one row per clip (its crops averaged) instead of per video")
    features.add_argument("--views", type=int, choices=(30, 3, 1), default=30,
                          help="30: 10 clips x 3 crops (the test protocol); 3: 3 clips x centre crop; 1: one clip")
    features.add_argument("--batch-size", type=int, default=30, help="views per forward pass (default 30)")
    features.add_argument("--cache", default=None,
                          help="folder of per-view embeddings, so a killed run resumes (default: OUTPUT.views)")
    features.set_defaults(func=_features)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(level=logging.DEBUG if args.verbose else logging.WARNING)
    try:
        return args.func(args)
    except NlflowError as error:
        print(f"nlflow {args.command}: {one_line(error)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
