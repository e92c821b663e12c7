# Shared helpers: where outputs go, and the slices of the config each rule takes as params.
# A rule gets exactly the values it uses (params), so a config change re-runs what it affects.
from nlflow.acquire.datasets import dataset_spec, video_source_dir
from nlflow.weights.zoo import resolve_pretrained, zoo_model, zoo_names


def R(path):
    """A path under the configured results folder."""
    return str(Path(config["results_dir"]) / path)


def with_results_dir(text):
    """Expand `{results_dir}` in configured URLs and paths (the demo points at its own outputs)."""
    return (
        None if text is None else text.replace("{results_dir}", config["results_dir"])
    )


# The dataset kind (nlflow.acquire.datasets) says which archives exist, whether the video archive
# nests one archive per class, and the class count; a bad dataset section stops the run here.
DATASET = dataset_spec(config["dataset"], expand=with_results_dir)
ARCHIVES = {
    part: {
        "filename": config["dataset"][part]["filename"],
        "urls": [with_results_dir(url) for url in config["dataset"][part]["urls"]],
        "sha256": config["dataset"][part].get("sha256"),
        "md5": config["dataset"][part].get("md5"),
    }
    for part in DATASET.kind.archives
}
# What make_lists reads (for `folder`, with a digest of the videos: computed once, at start-up).
LISTS_SETTINGS = DATASET.lists_settings()
# The official split number names the lists folder; a `folder` dataset keeps it at its default, 1.
SPLIT = config["dataset"]["split"]
# The HTML report's front page is rendered from the config alone: hand it the evaluation's numbers.
config["report_headline"] = headline_numbers(R("evaluate/metrics.json"), config)
LISTS = R(f"lists/split{SPLIT}")
LMDB_LISTS = {"train": "train_shuffled.txt", "val": "val.txt", "test": "test.txt"}
# pretrained.name completes the model section from the model zoo (a contradiction stops here).
PRETRAINED = resolve_pretrained(config["model"], config["pretrained"])
config["model"] = PRETRAINED.model
PRETRAINED_PKL = with_results_dir(PRETRAINED.pkl)


def archive_filenames():
    return [archive["filename"] for archive in ARCHIVES.values()]


def archive_by_filename(filename):
    for archive in ARCHIVES.values():
        if archive["filename"] == filename:
            return archive
    raise ValueError(f"no configured archive is named {filename}")


def local_source(url):
    """The local file behind a `file:` URL or plain path, so Snakemake can order the demo before download."""
    if url.startswith("file://"):
        return url[len("file://") :]
    if url.startswith("file:"):
        return url[len("file:") :]
    if "://" in url:
        return None
    return url


def demo_source_inputs(wildcards):
    """The demo's archives are produced by make_demo_dataset; real mirrors are not Snakemake inputs."""
    archive = archive_by_filename(wildcards.filename)
    paths = [local_source(url) for url in archive["urls"]]
    return [
        path
        for path in paths
        if path is not None and path.startswith(config["results_dir"])
    ]


def holds_class_archives(wildcards):
    """True for an archive of per-class archives (HMDB-51's videos), which extract unpacks nested."""
    return wildcards.part == "videos" and DATASET.kind.nested_videos


def video_source():
    """Where downscale and make_lists read videos: the extracted archive, or a `folder` dataset's root."""
    return video_source_dir(DATASET, R("extracted/videos"))


def lists_inputs(wildcards):
    """make_lists reads the extracted archives, or the user's folder and list files (their edits re-run it)."""
    inputs = {"videos": video_source(), **DATASET.user_lists()}
    if "splits" in ARCHIVES:
        inputs["splits"] = R("extracted/splits")
    return inputs


def downscale_source_params():
    """A `folder` dataset's inventory, so added or changed videos re-run downscale; nothing otherwise."""
    if DATASET.kind.name != "folder":
        return {}
    return {"inventory": LISTS_SETTINGS["inventory"]}


def model_params():
    # num_classes may be left out: the kind's official count, or the class folders of a `folder` root.
    return dict(config["model"], num_classes=DATASET.num_classes)


def view_params():
    test = config["test"]
    return {
        "video_length": config["model"]["video_length"],
        "sample_rate": config["model"]["sample_rate"],
        "num_clips": test["num_clips"],
        "num_crops": test["num_crops"],
        "scale": test["scale"],
        "crop_size": test["crop_size"],
    }


def all_cores():
    """The cores given with --cores; 1 for commands that run no job (e.g. --report)."""
    try:
        return workflow.cores
    except WorkflowError:
        return 1


def pretrained_weights():
    """The Caffe2 file clean_weights starts from: the zoo download, a local file, or none (scratch)."""
    if PRETRAINED.name:
        return [R(f"weights/download/{PRETRAINED.name}.pkl")]
    return [PRETRAINED_PKL] if PRETRAINED_PKL else []
