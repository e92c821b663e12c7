# Shared helpers: where outputs go, and the slices of the config each rule takes as params.
# A rule gets exactly the values it uses (params), so a config change re-runs what it affects.
from nlflow.archives.download import local_source_path
from nlflow.evaluate.headline import comparison_headline, headline_numbers
from nlflow.lists.datasets import dataset_spec, video_source_dir
from nlflow.weights.zoo import resolve_pretrained, zoo_model, zoo_names
from nlflow.workflow.config import (
    DEMO_MODEL_PLACEHOLDER,
    Operational,
    ReportOnly,
    demo_model_id,
)
from nlflow.workflow.experiments import find_table, read_experiments
from nlflow.workflow.plan import downscale_estimate


def R(path):
    """A path under the configured results folder."""
    return str(Path(config["results_dir"]) / path)


def with_results_dir(text):
    """Expand `{results_dir}` in configured URLs and paths (the demo points at its own outputs)."""
    return (
        None if text is None else text.replace("{results_dir}", config["results_dir"])
    )


# The dataset kind (nlflow.lists.datasets) says which archives exist, whether the video archive
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
LISTS = R(f"lists/split{SPLIT}")
LMDB_LISTS = {"train": "train_shuffled.txt", "val": "val.txt", "test": "test.txt"}
# The config the jobs see: pretrained.name completes the model section from the model zoo (a
# contradiction stops here). `config` itself stays as validated: what experiment rows override.
JOB_CONFIG = dict(
    config, model=resolve_pretrained(config["model"], config["pretrained"]).model
)

# Experiments: `experiments` names a table with one row per experiment (nlflow.workflow.experiments);
# each row is a whole config, and its outputs go to experiments/<name>/. Without a table there is one
# experiment, JOB_CONFIG, whose outputs keep their places (weights/, train/, evaluate/, report/).
EXPERIMENTS = (
    read_experiments(
        find_table(with_results_dir(config["experiments"]), workflow.basedir),
        config,
        SCHEMA_DICT,
    ).configs
    if config.get("experiments")
    else {}
)
EXP = "experiments/{experiment}/" if EXPERIMENTS else ""
REPORT_SUBCATEGORY = "{experiment}" if EXPERIMENTS else None


def exp_config(wildcards):
    """The whole config of the job's experiment (JOB_CONFIG without a table)."""
    return EXPERIMENTS[wildcards.experiment] if EXPERIMENTS else JOB_CONFIG


def exp_setting(section, key):
    """An input function: one key of a section of the job's experiment's config."""
    return lambda wildcards: exp_config(wildcards)[section][key]


def exp_path(path):
    """An input function: ``path`` inside the job's experiment folder."""
    return lambda wildcards: R(
        EXP.format(experiment=getattr(wildcards, "experiment", "")) + path
    )


def all_experiment_configs():
    return list(EXPERIMENTS.values()) or [JOB_CONFIG]


def expand_pkl(text, model):
    """A configured weights path: `{results_dir}`, and `{demo_model}` for this network's demo file."""
    text = with_results_dir(text)
    return text.replace(DEMO_MODEL_PLACEHOLDER, demo_model_id(model)) if text else text


# The demo's stand-in "pretrained" files: one per architecture the experiments use.
DEMO_MODELS = {
    demo_model_id(cfg["model"]): cfg["model"] for cfg in all_experiment_configs()
}


def archive_filenames():
    return [archive["filename"] for archive in ARCHIVES.values()]


def archive_by_filename(filename):
    for archive in ARCHIVES.values():
        if archive["filename"] == filename:
            return archive
    raise ValueError(f"no configured archive is named {filename}")


def demo_source_inputs(wildcards):
    """The demo's archives are produced by make_demo_dataset; real mirrors are not Snakemake inputs.
    A `file:` URL or plain path means the file download copies (nlflow.archives.download), so
    Snakemake can order the demo before download."""
    results = Path(config["results_dir"])
    paths = [
        local_source_path(url)
        for url in archive_by_filename(wildcards.filename)["urls"]
    ]
    return [
        str(path) for path in paths if path is not None and path.is_relative_to(results)
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


def model_params(wildcards):
    # num_classes may be left out: the kind's official count, or the class folders of a `folder` root.
    return canonical(
        dict(exp_config(wildcards)["model"], num_classes=DATASET.num_classes)
    )


def view_params(wildcards):
    cfg = exp_config(wildcards)
    test = cfg["test"]
    return canonical(
        {
            "video_length": cfg["model"]["video_length"],
            "sample_rate": cfg["model"]["sample_rate"],
            "num_clips": test["num_clips"],
            "num_crops": test["num_crops"],
            "scale": test["scale"],
            "crop_size": test["crop_size"],
        }
    )


def clip_params(wildcards):
    """The model keys that shape the training clips."""
    model = exp_config(wildcards)["model"]
    return canonical({key: model[key] for key in ("video_length", "sample_rate")})


def train_job_gpus(wildcards):
    """The GPUs of the whole train job (SLURM's per-job `--gpus`): train.gpus on each node."""
    train = exp_config(wildcards)["train"]
    return train["gpus"] * train["nodes"]


def evaluate_job_gpus(wildcards):
    """Evaluation runs in one process: one GPU where training has any."""
    return min(exp_config(wildcards)["train"]["gpus"], 1)


def report_settings(wildcards):
    """What report.md lists under Settings: the keys that can change the results."""
    cfg = exp_config(wildcards)
    return canonical(
        {
            "dataset": cfg["dataset"],
            "model": cfg["model"],
            "train": result_params(cfg["train"], "train"),
            "test": result_params(cfg["test"], "test"),
        }
    )


def report_headline(wildcards):
    """The HTML report's front-page numbers (workflow/report/workflow.rst reads them from the
    report job's params); empty until the evaluation has run, and with an experiments table, whose
    front page shows the comparison instead."""
    if EXPERIMENTS:
        return ReportOnly()
    return ReportOnly(headline_numbers(R("evaluate/metrics.json"), JOB_CONFIG) or {})


def comparison_headline_params():
    """Each experiment's top-1 / top-5 for the HTML report's front page; empty until compared."""
    return ReportOnly(experiments=comparison_headline(R("compare/summary.csv")) or [])


def section_params(section, result=True):
    """An input function: the job's experiment's config section, its result or operational keys."""
    pick = result_params if result else operational_params
    return lambda wildcards: pick(exp_config(wildcards)[section], section)


def all_cores():
    """The cores given with --cores; 1 for commands that run no job (e.g. --report)."""
    try:
        return workflow.cores
    except WorkflowError:
        return 1


def pretrained_weights(wildcards):
    """The Caffe2 file clean_weights starts from: the zoo download, a local file, or none (scratch)."""
    cfg = exp_config(wildcards)
    name, pkl = cfg["pretrained"]["name"], cfg["pretrained"]["pkl"]
    if name:
        return [R(f"weights/download/{name}.pkl")]
    return [expand_pkl(pkl, cfg["model"])] if pkl else []


def preflight_params(**estimates):
    """Whether a big stage checks the free space before it writes (and what it expects to write);
    never a reason to re-run a job (Operational)."""
    return Operational(check_disk=config["preflight"]["check_disk"], **estimates)
