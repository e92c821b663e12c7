# Shared helpers: where outputs go, and the slices of the config each rule takes as params.
# A rule gets exactly the values it uses (params), so a config change re-runs what it affects.
from types import SimpleNamespace

from nlflow.archives.download import local_source_path
from nlflow.evaluate.headline import comparison_headline, headline_numbers
from nlflow.lists.datasets import archive_offline_hint, video_source_dir
from nlflow.lists.listfiles import list_paths
from nlflow.weights.zoo import (
    TARBALL,
    TARBALL_URL,
    local_zoo_file,
    offline_hint,
    start_names,
    zoo_entry,
    zoo_model,
    zoo_names,
)
from nlflow.train.solver import TRAINING_MODEL_KEYS
from nlflow.video.downscale import RECIPE_VERSION
from nlflow.workflow.config import (
    DEMO_MODEL_PLACEHOLDER,
    Operational,
    ReportOnly,
    check_untrained,
    demo_model_id,
    network_params,
    trains,
)
from nlflow.workflow.experiments import find_table, read_experiments
from nlflow.workflow.plan import demo_dataset_estimate, downscale_estimate


def R(path):
    """A path under the configured results folder."""
    return str(Path(config["results_dir"]) / path)


def with_results_dir(text):
    """Expand `{results_dir}` in configured URLs and paths (the demo points at its own outputs)."""
    return (
        None if text is None else text.replace("{results_dir}", config["results_dir"])
    )


# The dataset kind (nlflow.lists.datasets) says which archives exist, whether the video archive
# nests one archive per class, and the class count (checked in the Snakefile: STARTUP).
DATASET = STARTUP.dataset
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
# contradiction stopped the start). `config` itself stays as validated: what experiment rows override.
JOB_CONFIG = dict(config, model=STARTUP.pretrained.model)

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


# train.enabled false: an experiment evaluates its pretrained network, converted with its own head,
# instead of a trained one (a released model's README row); a config that cannot do that stops here.
for _name, _cfg in (EXPERIMENTS or {None: JOB_CONFIG}).items():
    check_untrained(_cfg, _name)
ANY_TRAINING = any(trains(cfg) for cfg in all_experiment_configs())


def evaluated_model(wildcards):
    """The network evaluate scores: the trained one, or the converted pretrained one (train.enabled false)."""
    trained = trains(exp_config(wildcards))
    return exp_path("train/model_final.pt" if trained else "weights/init.pt")(wildcards)


def training_log(wildcards):
    """The training metrics the report plots; none for an experiment that does not train."""
    return (
        exp_path("train/metrics.jsonl")(wildcards)
        if trains(exp_config(wildcards))
        else []
    )


def training_params(wildcards):
    """The train section as the train job takes it (result keys; train.enabled decided the DAG)."""
    return {
        key: value
        for key, value in section_params("train")(wildcards).items()
        if key != "enabled"
    }


def clean_weights_extra_params():
    """What only some configs hand clean_weights, absent otherwise so that other runs' params (and
    jobs) stay as they were: the dataset's class names where they are known at start-up (Kinetics),
    stored in the checkpoint; whether an experiment evaluates the network as converted.
    """
    params = {}
    if DATASET.class_names is not None:
        params["classes"] = list(DATASET.class_names)
    if not all(trains(cfg) for cfg in all_experiment_configs()):
        params["evaluate_as_is"] = lambda wildcards: not trains(exp_config(wildcards))
    return params


def expand_pkl(text, model):
    """A configured weights path: `{results_dir}`, and `{demo_model}` for this network's demo file."""
    text = with_results_dir(text)
    return text.replace(DEMO_MODEL_PLACEHOLDER, demo_model_id(model)) if text else text


# The demo's stand-in "pretrained" files: one per architecture the experiments use.
DEMO_MODELS = {
    demo_model_id(cfg["model"]): network_params(cfg["model"])
    for cfg in all_experiment_configs()
}


def archive_filenames():
    return [archive["filename"] for archive in ARCHIVES.values()]


def archive_by_filename(filename):
    return ARCHIVES[archive_part(filename)]


def archive_part(filename):
    """The `dataset` section (videos, splits) whose archive is called `filename`."""
    for part, archive in ARCHIVES.items():
        if archive["filename"] == filename:
            return part
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


def downloaded_splits():
    """The Kinetics splits `dataset.download: cvdf` fetches: val (the test list) always, train only
    when an experiment trains (about 351 of the 436 GB, by video count)."""
    return ["train", "val"] if ANY_TRAINING else ["val"]


def video_source_inputs(wildcards=None):
    """What downscale and make_lists wait for: the video folder, or for a Kinetics copy the
    download makes, that download's per-split records (the copy is then `copy_root`)."""
    if DATASET.downloads_copy:
        return {
            "downloaded": expand(
                R("download/kinetics400/{split}.done"), split=downloaded_splits()
            )
        }
    return {"videos": video_source()}


def copy_root_params():
    """The downloaded Kinetics copy's folder (no rule's output: its download is resumed part by
    part, and Snakemake deletes a job's outputs before the job runs); nothing for other datasets.
    """
    return {"copy_root": DATASET.root} if DATASET.downloads_copy else {}


def lists_inputs(wildcards):
    """make_lists reads the extracted archives, or the user's folder and list files (their edits re-run it)."""
    inputs = {**video_source_inputs(), **DATASET.user_lists()}
    if "splits" in ARCHIVES:
        inputs["splits"] = R("extracted/splits")
    return inputs


def downscale_source_params():
    """A user's folder's inventory (`folder`, a Kinetics copy), so added or changed videos re-run
    downscale, and which of a Kinetics copy's folders it reads; nothing for other kinds.
    """
    params = {}
    if "inventory" in LISTS_SETTINGS:
        params["inventory"] = LISTS_SETTINGS["inventory"]
    folders = DATASET.video_folders()
    if folders is not None:
        # Without training only the test videos are needed (hours less for Kinetics' train split).
        params["folders"] = sorted(
            folder
            for split, folder in folders.items()
            if ANY_TRAINING or split == "val"
        )
    return params


def lists_extra_outputs():
    """missing.csv for the kinds whose annotations may list videos the copy lacks (Kinetics)."""
    if DATASET.kind.name != "kinetics400":
        return {}
    return {"missing": f"{LISTS}/missing.csv"}


def model_params(wildcards):
    """The network clean_weights builds (dropout has no weights: it goes to train)."""
    # num_classes may be left out: the kind's official count, or the class folders of a `folder` root.
    return canonical(
        dict(
            network_params(exp_config(wildcards)["model"]),
            num_classes=DATASET.num_classes,
        )
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


def training_model_params(wildcards):
    """The model keys the training loop reads: the clips' frames and the dropout rate."""
    model = exp_config(wildcards)["model"]
    return canonical({key: model[key] for key in TRAINING_MODEL_KEYS})


def train_job_gpus(wildcards):
    """The GPUs of the whole train job (SLURM's per-job `--gpus`): train.gpus on each node."""
    train = exp_config(wildcards)["train"]
    return train["gpus"] * train["nodes"]


def train_launcher(wildcards):
    """`srun` where the train job spans several nodes (the stage starts its own job step across
    them), else None: no resource."""
    return "srun" if exp_config(wildcards)["train"]["nodes"] > 1 else None


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
    numbers = headline_numbers(
        R("evaluate/metrics.json"),
        JOB_CONFIG,
        lists=list_paths(LISTS),
        manifest=R("downscaled/manifest.csv"),
    )
    return ReportOnly(numbers or {})


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


def tensorboard_params(wildcards):
    """Whether evaluation adds to training's TensorBoard events, and the folder of the training runs
    (train.tensorboard is operational: it never makes a job run again)."""
    return Operational(
        enabled=exp_config(wildcards)["train"]["tensorboard"],
        runs=exp_path("train/checkpoints")(wildcards),
    )


def features_cache(wildcards):
    """The per-view embeddings of one store's videos, kept so that an interrupted job resumes."""
    return exp_path(f"features/{wildcards.part}_views")(wildcards)


def pretrained_weights(wildcards):
    """The Caffe2 file clean_weights starts from: the zoo download, a local file, or none (scratch)."""
    cfg = exp_config(wildcards)
    name, pkl = cfg["pretrained"]["name"], cfg["pretrained"]["pkl"]
    if name:
        return [R(f"weights/download/{name}.pkl")]
    return [expand_pkl(pkl, cfg["model"])] if pkl else []


def zoo_sources(wildcards):
    """Where download_weights gets a released model: the local copy that pretrained.pkl names next
    to pretrained.name (a file, or a folder holding <name>.pkl), else the zoo's URL."""
    for cfg in all_experiment_configs():
        pretrained = cfg["pretrained"]
        if pretrained["name"] == wildcards.name and pretrained["pkl"]:
            return [
                str(local_zoo_file(wildcards.name, with_results_dir(pretrained["pkl"])))
            ]
    return [zoo_model(wildcards.name).url]


def preflight_params(**estimates):
    """Whether a big stage checks the free space before it writes (and what it expects to write);
    never a reason to re-run a job (Operational)."""
    return Operational(check_disk=config["preflight"]["check_disk"], **estimates)
