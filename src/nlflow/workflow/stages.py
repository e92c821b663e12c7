"""One function per workflow stage: the library calls a Snakemake rule makes, with plain arguments.

The adapters in workflow/scripts/ pass `snakemake.input/output/params` here unchanged; each function
composes the library modules that do the work and logs what a user wants to see in the rule's log.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

from nlflow.errors import NlflowError

log = logging.getLogger("nlflow.workflow.stages")


def make_demo_dataset(
    out_dir: str, seed: int, num_frames: int, clips_per_group: int, n_jobs: int = 1,
    estimate_bytes: int | None = None, check_disk: bool = True,
) -> None:
    """The demo's archives in ``out_dir``; ``estimate_bytes`` (nlflow.workflow.plan): the most it
    holds on disk at once, checked against the free space before the first video is rendered."""
    from nlflow.demo.dataset import generate_demo
    from nlflow.diskspace import check_free_space

    if estimate_bytes is not None:
        check_free_space(out_dir, estimate_bytes, "the demo dataset (its videos, then the archive packed from them)",
                         enforce=check_disk)
    summary = generate_demo(
        out_dir, seed=seed, num_frames=num_frames, clips_per_group=clips_per_group, n_jobs=n_jobs
    )
    log.info(
        "demo dataset: %d videos of %d classes in %s (corrupt on purpose: %s; too short on purpose: %s)",
        summary.num_videos, len(summary.classes), out_dir, summary.corrupt_videos, summary.short_videos,
    )


def make_demo_weights(pkl: str, model: Mapping[str, Any], seed: int = 0) -> None:
    from nlflow.demo.weights import write_demo_pretrained
    from nlflow.models.builder import ModelConfig

    config = ModelConfig.from_dict(dict(model, num_classes=400))
    write_demo_pretrained(pkl, config, num_pretrain_classes=400, seed=seed)
    log.info("demo Caffe2-format weights (freshly initialised, 400-class head) written to %s", pkl)


def download(
    urls: Sequence[str], dest: str, sha256: str | None, lock_file: str | None, md5: str | None = None,
    hint: str | None = None,
    check_disk: bool = True,
) -> None:
    """Fetch ``dest`` from its mirrors, or from ``<dest's folder>/manual/<name>`` where a user put it by
    hand; ``hint`` (what to do instead, e.g. offline) ends the error when no source works."""
    from nlflow.archives.download import NoSourceWorkedError, fetch

    manual = Path(dest).parent / "manual" / Path(dest).name
    try:
        result = fetch(list(urls), dest, sha256=sha256, lock_file=lock_file, md5=md5, manual=manual,
                       check_disk=check_disk)
    except NoSourceWorkedError as exc:
        if hint is None:
            raise
        raise NoSourceWorkedError(f"{exc}; {hint}") from None
    how = "already present" if result.already_present else f"from {result.source}"
    log.info("%s: %d bytes %s, SHA-256 %s", Path(dest).name, result.size, how, result.sha256)


def extract(archive: str, target_dir: str, nested: bool = False, check_disk: bool = True) -> None:
    """Extract one archive; ``nested``: it holds one archive per class (HMDB-51's videos)."""
    from nlflow.archives.extract import extract_archive
    from nlflow.archives.nested_extract import extract_nested

    if nested:
        nested_result = extract_nested(archive, target_dir, check_disk=check_disk)
        log.info("%s: %d class archives, %d files, %d bytes -> %s", Path(archive).name,
                 len(nested_result.classes), nested_result.files, nested_result.bytes, target_dir)
        return
    result = extract_archive(archive, target_dir, check_disk=check_disk)
    log.info(
        "%s (%s): %d files, %d bytes -> %s", Path(archive).name, result.format, result.files, result.bytes, target_dir
    )


def download_kinetics(split: str, root: str, mirrors: Sequence[str], done: str, keep_tarballs: bool = False,
                      check_disk: bool = True) -> None:
    """One split of Kinetics-400 from the CVDF mirror into ``root`` (``dataset.download: cvdf``);
    ``done`` records what was fetched once every part is extracted."""
    from nlflow.archives.cvdf import download_split
    from nlflow.fileio import write_json_atomic

    result = download_split(split=split, root=root, bases=list(mirrors), keep_tarballs=keep_tarballs,
                            check_disk=check_disk)
    write_json_atomic(done, {"split": split, "root": str(root), "parts": result.parts, "videos": result.videos,
                             "manifest": str(result.manifest)})
    log.info("Kinetics-400 %s from the CVDF mirror: %d parts (%d fetched by this run), %d videos in %s", split,
             result.parts, result.fetched, result.videos, Path(root) / split)


def extract_member(archive: str, member: str, dest: str) -> None:
    """One file of a tar archive (a starting point in the original's pretrained_model.tar.gz)."""
    from nlflow.archives.extract import extract_tar_member

    size = extract_tar_member(archive, member, dest)
    log.info("%s: %s, %d bytes -> %s", Path(archive).name, member, size, dest)


def make_lists(
    videos_dir: str,
    splits_dir: str | None,
    dataset: Mapping[str, Any],
    out: Mapping[str, str],
) -> None:
    """The configured dataset's train / val / test lists, classes.txt and lists.json (``out``: name -> path)."""
    from nlflow.lists.datasets import make_dataset_lists
    from nlflow.lists.holdout import VALIDATION_TEXT
    from nlflow.lists.listfiles import write_lists

    lists = make_dataset_lists(dataset, videos_dir, splits_dir)
    write_lists(out, lists)
    summary = lists.summary()
    log.info(
        "%s: %d classes, %d train, %d val, %d test videos (test: %s) -> %s", dataset["name"],
        summary["num_classes"], summary["num_train"], summary["num_val"], summary["num_test"], summary["test"],
        Path(out["train"]).parent,
    )
    log.info("%s", VALIDATION_TEXT[summary["validation"]])
    if lists.missing:
        by_split = ", ".join(f"{count} {split}" for split, count in summary["missing_by_split"].items())
        log.warning("%d listed videos are not in the copy (%s; missing test videos count as wrong, as the "
                    "original counts them), named in %s", len(lists.missing), by_split, out.get("missing", "missing.csv"))


def downscale(
    extracted_dir: str,
    out_dir: str,
    manifest: str,
    short_side: int,
    upsample: bool,
    keyframe_interval: int,
    qscale: int,
    n_jobs: int,
    folders: Sequence[str] | None = None,
    estimate_bytes: int | None = None,
    check_disk: bool = True,
) -> None:
    """Every video of the source, or with ``folders`` (a Kinetics copy's split folders) every video
    below those top folders of ``extracted_dir``, taken as it is (no top folder unwrapped).
    ``estimate_bytes``: what the whole dataset's copy is expected to take (nlflow.workflow.plan),
    checked against the free space before the first video."""
    from nlflow.fileio import resumable_dir
    from nlflow.lists.video_tree import list_videos, video_root
    from nlflow.video.downscale import downscale_all

    if folders is None:
        root = video_root(extracted_dir)
        videos = list_videos(root)
    else:
        root = Path(extracted_dir)
        videos = [f"{folder}/{rel}" for folder in folders for rel in list_videos(root / folder)]
        log.info("reading %s of %s", ", ".join(f"{folder}/" for folder in folders), root)
    if not videos:
        raise NlflowError(f"no videos found under {root}")
    # A killed job leaves its finished videos in the work folder; the re-run reuses them.
    with resumable_dir(out_dir) as work_dir:
        log.info("working in %s (kept if this job dies, so a re-run resumes)", work_dir)
        rows = downscale_all(
            root, videos, work_dir, manifest, short_side=short_side, upsample=upsample,
            keyframe_interval=keyframe_interval, qscale=qscale, n_jobs=n_jobs, estimate_bytes=estimate_bytes,
            check_disk=check_disk,
        )
    failed = [row for row in rows if row.status != "ok"]
    log.info("downscaled %d videos, %d failed (recorded in %s)", len(rows), len(failed), manifest)
    for row in failed:
        log.warning("%s: %s (%s)", row.video, row.status, row.error)


def _usable(entries: list[tuple[str, int]], manifest_rows: Mapping[str, Any]) -> tuple[list[tuple[str, int]], list[tuple[str, int, str]]]:
    from nlflow.video.manifest import summarize_exclusions, usable_entries

    kept, excluded = usable_entries(entries, manifest_rows)
    log.info("%s", summarize_exclusions(excluded, total=len(entries)))
    for video, _, reason in excluded:
        log.warning("excluded %s: %s", video, reason)
    if not kept:
        raise NlflowError("no usable videos left after excluding missing, corrupt and empty ones")
    return kept, excluded


def shuffle_rep(train_list: str, manifest: str, out: str, repeats: int, seed: int) -> None:
    from nlflow.fileio import write_text_atomic
    from nlflow.lists.listfiles import format_list, read_list
    from nlflow.store.shuffle import shuffle_repeat
    from nlflow.video.manifest import read_manifest

    kept, _ = _usable(read_list(train_list), read_manifest(manifest))
    shuffled = shuffle_repeat(kept, repeats, seed)
    write_text_atomic(out, format_list(shuffled))
    log.info("training list: %d videos x %d repeats, shuffled with seed %d -> %s", len(kept), repeats, seed, out)


def write_lmdb(
    entries_list: str,
    classes_file: str,
    videos_dir: str,
    manifest: str,
    out: str,
    kind: str,
    embed: bool,
    check_disk: bool = True,
) -> None:
    from nlflow.lists.listfiles import read_classes, read_list
    from nlflow.store.lmdb_store import write_store
    from nlflow.video.manifest import read_manifest

    rows = read_manifest(manifest, videos_dir=videos_dir)
    classes = read_classes(classes_file)
    entries, excluded = _usable(read_list(entries_list, num_classes=len(classes)), rows)
    count = write_store(
        out, entries, videos_dir, kind=kind, classes=classes,
        settings={"source_list": Path(entries_list).name},
        frames={video: rows[video].frames for video, _ in entries}, embed=embed, excluded=excluded,
        check_disk=check_disk,
    )
    log.info("%s store: %d records -> %s", kind, count, out)


def clean_weights(pkl: str | None, out: str, model: Mapping[str, Any], drop_head: bool, keep_bn_stats: bool,
                  classes: Sequence[str] | None = None, evaluate_as_is: bool = False) -> None:
    """The pretrained network as an nlflow checkpoint (``classes``: the dataset's names, when known
    before the lists are made). ``evaluate_as_is``: no training follows, so the file's own
    classifier must fit the dataset (a new one would score at chance)."""
    from nlflow.models.builder import ModelConfig, build_model
    from nlflow.models.checkpoint import save_checkpoint
    from nlflow.weights.convert import convert_caffe2_to_checkpoint

    config = ModelConfig.from_dict(dict(model))
    classes = list(classes) if classes is not None else None
    if pkl is None:
        if evaluate_as_is:
            raise NlflowError("train.enabled is false but no pretrained weights are configured: there is nothing to evaluate")
        log.warning("no pretrained weights configured: training starts from a fresh initialisation")
        save_checkpoint(out, build_model(config), classes=classes, extra={"source": "scratch"})
        return
    # A file without non-local blocks starts a non-local network (the ImageNet and affine starts):
    # the blocks keep their initialisation, the original's rule for blobs a file lacks. A network
    # evaluated as converted must find every tensor in the file.
    report = convert_caffe2_to_checkpoint(
        pkl, out, model_cfg=config, num_classes=config.num_classes, classes=classes,
        drop_head=drop_head, keep_bn_stats=keep_bn_stats, require_head=evaluate_as_is,
        init_missing_nonlocal=not evaluate_as_is,
    )
    if evaluate_as_is:
        log.info("train.enabled is false: this network, with its own %d-class classifier, is what evaluate scores",
                 report.model_config.num_classes)


def train(
    train_lmdb: str,
    val_lmdb: str,
    init: str,
    classes_file: str,
    model_out: str,
    metrics_out: str,
    checkpoint_dir: str,
    train_config: Mapping[str, Any],
    model: Mapping[str, Any],
    operational: Mapping[str, Any] | None = None,
    gpus: int = 0,
    nodes: int = 1,
    threads: int = 1,
    check_disk: bool = True,
) -> None:
    """Fine-tune and publish ``model_final.pt`` and ``metrics.jsonl``.

    ``gpus`` is the rule's ``gpu`` resource: the GPUs of the whole job (SLURM's ``--gpus``), so
    ``gpus // nodes`` training processes run on each of ``nodes`` nodes (see
    :mod:`nlflow.train.launch`), sharing the job's ``threads`` cores on a node. One process runs the
    loop here; more run under torchrun (and srun across nodes), all on the same run folder,
    settings and inputs, given on their command line.
    """
    from nlflow.diskspace import check_free_space
    from nlflow.train.job import checkpoint_bytes, launch_arguments, prepare_run_folder, publish, run_training
    from nlflow.train.launch import gpus_per_node, plan_launch, visible_cuda_devices
    from nlflow.train.loop import METRICS_NAME
    from nlflow.train.solver import TrainSettings

    launch_keys = ("gpus", "nodes")  # come from the job's resources, not the settings
    runtime = {key: value for key, value in (operational or {}).items() if key not in launch_keys}
    settings = TrainSettings.from_config(dict(model), {**train_config, **runtime})
    run_dir, start = prepare_run_folder(checkpoint_dir, settings, train_lmdb, val_lmdb, init)
    log.info("training run folder: %s (a restarted job resumes from its newest checkpoint)", run_dir)
    if start is not None:
        log.info("continuing the run in %s from its iteration %d: its settings and its learning rates up to "
                 "there are this run's (nlflow.train.continuation)", start.run_dir, start.iteration)
    check_free_space(run_dir, checkpoint_bytes(os.path.getsize(init), settings.keep_checkpoints),
                     "training's checkpoints", enforce=check_disk)
    arguments = launch_arguments(run_dir, train_lmdb, val_lmdb, init, classes_file)
    plan = plan_launch(gpus_per_node(gpus, nodes), nodes or 1, arguments, cuda_devices=visible_cuda_devices(),
                       environ=os.environ, threads=threads, sync_bn=settings.sync_bn)
    for warning in plan.warnings:
        log.warning("%s", warning)
    log.info("training with %s", plan.describe())
    final = run_training(plan, settings, run_dir, train_lmdb, val_lmdb, init, classes_file)
    publish(final, model_out)
    publish(run_dir / METRICS_NAME, metrics_out)


def evaluate(
    model: str,
    test_lmdb: str,
    metrics_out: str,
    predictions_out: str,
    views: Mapping[str, Any],
    aggregate: str,
    cache_dir: str,
    operational: Mapping[str, Any],
    amp: str = "none",
    tensorboard: Mapping[str, Any] | None = None,
) -> None:
    """Evaluate ``model``; with ``tensorboard["enabled"]``, add the results to the TensorBoard
    events of the training run below ``tensorboard["runs"]`` that produced the model."""
    from nlflow.evaluate.run import evaluate as run_evaluation
    from nlflow.video.views import ViewSpec

    spec = ViewSpec.from_dict(dict(views))
    metrics = run_evaluation(
        model, test_lmdb, spec, cache_dir, metrics_out, predictions_out,
        batch_size=operational["batch_size"], num_workers=operational["num_workers"], aggregate=aggregate, amp=amp,
    )
    log.info(
        "video-level top-1 %.4f, top-5 %.4f over the %d listed test videos (%d views each)",
        metrics["top1"], metrics["top5"], metrics["num_listed"], spec.num_views,
    )
    if tensorboard and tensorboard.get("enabled"):
        _log_evaluation_to_tensorboard(model, metrics, tensorboard["runs"])


def _log_evaluation_to_tensorboard(model: str, metrics: Mapping[str, Any], runs: str) -> None:
    from nlflow.evaluate.tensorboard_log import log_evaluation
    from nlflow.models import read_checkpoint
    from nlflow.train.job import find_run_folder

    run_dir = find_run_folder(runs, model)
    if run_dir is None:
        log.warning("no training run below %s produced %s: the confusion matrix goes to no TensorBoard events", runs, model)
        return
    step = int((read_checkpoint(model).get("extra") or {}).get("iterations", 0))
    events = log_evaluation(run_dir, metrics, step)
    log.info("TensorBoard: confusion matrix and video top-1 / top-5 at iteration %d in %s", step, events)


def extract_features(
    model: str,
    store: str,
    out: str,
    views: Mapping[str, Any],
    per_clip: bool,
    cache_dir: str,
    operational: Mapping[str, Any],
) -> None:
    """One embedding per listed video of ``store`` (per clip with ``per_clip``) into ``out`` (parquet)."""
    from nlflow.features.extract import store_features
    from nlflow.video.views import ViewSpec

    spec = ViewSpec.from_dict(dict(views))
    summary = store_features(model, store, spec, cache_dir, out, per_clip=per_clip,
                             batch_size=operational["batch_size"], num_workers=operational["num_workers"])
    log.info("features of %d videos (%d rows, %d without features; %d computed, %d from the cache) -> %s",
             summary["videos"], summary["rows"], len(summary["failed"]), summary["run"]["computed"],
             summary["run"]["reused"], out)


def report(train_metrics: str, eval_metrics: str, out_dir: str, settings: Mapping[str, Any],
           lists: Mapping[str, str] | None = None, manifest: str | None = None) -> None:
    """Plots and report.md; with the lists and the downscale manifest, also the Data section."""
    from nlflow.evaluate.data_overview import read_data_overview
    from nlflow.evaluate.report import write_report

    data = read_data_overview(lists=lists, manifest=manifest) if lists and manifest else None
    paths = write_report(train_metrics, eval_metrics, out_dir, dict(settings), data)
    if data is not None and data.classes_without_test_videos:
        log.warning("classes without test videos (accuracy unknown, left out of the mean class accuracy): %s",
                    ", ".join(data.classes_without_test_videos))
    log.info("report: %s", ", ".join(str(p) for p in paths))


def compare(experiments: Sequence[str], eval_metrics: Sequence[str], train_metrics: Sequence[str],
            models: Sequence[str], out: Mapping[str, str], trains: Sequence[bool] | None = None) -> None:
    """One comparison row per experiment; ``models`` are the evaluated networks, ``train_metrics``
    the training logs of the experiments whose ``trains`` entry is true (all, when not given)."""
    trains = [True] * len(experiments) if trains is None else list(trains)
    from nlflow.evaluate.compare import experiment_row, write_comparison

    trained = iter(train_metrics)  # one file per experiment that trains (``trains``), in order
    rows = [experiment_row(name, metrics, next(trained) if does_train else None, model)
            for name, metrics, model, does_train in zip(experiments, eval_metrics, models, trains)]
    frame = write_comparison(rows, out["table"], out["markdown"], out["chart"])
    for row in frame.itertuples():
        log.info("%s: video top-1 %.4f, top-5 %.4f, clip top-1 %.4f", row.experiment, row.top1, row.top5, row.clip_top1)
