"""The released Kinetics-400 models of video-nonlocal-net, by name, and what a name fixes in a config.

Every row comes from the original README's four model tables (URL, published top-1 / top-5,
"in paper" top-1) and from the script that trained the model (``scripts/<script>``): its config
file, ``MODEL.VIDEO_ARC_CHOICE`` (1 c2d, 2 i3d), ``MODEL.MODEL_NAME`` (``resnet_video_org`` =
the paper's stem, temporal stride 2), ``NONLOCAL.CONV3/CONV4_NONLOCAL``, ``TRAIN.VIDEO_LENGTH`` /
``SAMPLE_RATE`` (the config's 8 x 8, or 32 x 4 in the affine config, unless the script overrides
them) and ``TRAIN.DROPOUT_RATE``. The affine config
(``DBG_kinetics_resnet_8gpu_c2d_nonlocal_affine_400k.yaml``) freezes every BN into an affine
layer and builds norm-free non-local blocks, grouped in time in res3 (``group_size = 4``).
All released models are ResNet-50 at full width.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from nlflow.errors import ConfigError, problems_message
from nlflow.fileio import shown_path
from nlflow.models.builder import ModelConfig

ZOO_URL = "https://dl.fbaipublicfiles.com/video-nonlocal/{name}.pkl"
AFFINE_NONLOCAL_GROUP = 4  # res_stage_nonlocal_group(..., group_size=4) in resnet_video*.py
PAPER, SPEED, FEWER_ITERATIONS, FOUR_GPUS = "paper", "speed", "300k", "4-GPU"


@dataclass(frozen=True)
class ZooModel:
    """One released checkpoint and the network and clips it was trained with."""

    name: str
    script: str  # scripts/<script> of the original
    table: str  # README section: paper, speed (sparser sampling), 300k, 4-GPU
    arch: str  # c2d | i3d
    use_nonlocal: bool
    affine: bool  # the affine config: frozen BN, norm-free non-local blocks grouped in res3
    model_name: str  # MODEL.MODEL_NAME: resnet_video | resnet_video_org
    video_length: int
    sample_rate: int
    top1: float  # Kinetics-400 val, fully-convolutional 30-view test, as published
    top5: float
    paper_top1: float | None = None  # the "in paper" column (paper models only)
    dropout: float = 0.5  # TRAIN.DROPOUT_RATE of the script (informative: fine-tuning chooses its own)
    depth: int = 50
    width: int = 64

    @property
    def url(self) -> str:
        return ZOO_URL.format(name=self.name)

    @property
    def stem_temporal_stride(self) -> int:
        return 2 if self.model_name == "resnet_video_org" else 1

    @property
    def clip(self) -> str:
        return f"{self.video_length}x{self.sample_rate}"

    def model_settings(self) -> dict[str, Any]:
        """The ``model`` config keys this checkpoint fixes. ``frozen_bn`` only when affine (a
        BN checkpoint may still be fine-tuned with frozen BN: its statistics fold into the
        affine layers); the non-local variant only when the network has non-local blocks."""
        settings: dict[str, Any] = {
            "arch": self.arch,
            "depth": self.depth,
            "use_nonlocal": self.use_nonlocal,
            "width": self.width,
            "video_length": self.video_length,
            "sample_rate": self.sample_rate,
            "stem_temporal_stride": self.stem_temporal_stride,
        }
        if self.affine:
            settings["frozen_bn"] = True
        if self.use_nonlocal:
            settings["nonlocal_norm"] = not self.affine
            settings["nonlocal_temporal_group"] = AFFINE_NONLOCAL_GROUP if self.affine else 0
        return settings

    def model_config(self, num_classes: int = 400) -> ModelConfig:
        """The network as released (400 Kinetics classes unless told otherwise)."""
        return ModelConfig(num_classes=num_classes, dropout=self.dropout, **self.model_settings())


def _model(name: str, script: str, table: str, top1: float, top5: float, **facts: Any) -> ZooModel:
    arch = "c2d" if name.startswith("c2d") else "i3d"
    return ZooModel(name=name, script=script, table=table, arch=arch, use_nonlocal="_nonlocal_" in name,
                    top1=top1, top5=top5, **facts)


_PAPER = {"model_name": "resnet_video_org"}
_SPEED = {"model_name": "resnet_video"}
ZOO: tuple[ZooModel, ...] = (
    # "Main Results": the paper's settings, 32x2 and 128x1 clips, resnet_video_org.
    _model("c2d_baseline_32x2_IN_pretrain_400k", "run_c2d_baseline_400k_32f.sh", PAPER, 72.0, 90.0,
           paper_top1=71.8, affine=False, video_length=32, sample_rate=2, **_PAPER),
    _model("c2d_nonlocal_32x2_IN_pretrain_400k", "run_c2d_nlnet_400k_32f.sh", PAPER, 73.9, 91.0,
           paper_top1=73.8, affine=False, video_length=32, sample_rate=2, **_PAPER),
    _model("i3d_baseline_32x2_IN_pretrain_400k", "run_i3d_baseline_400k_32f.sh", PAPER, 73.6, 90.8,
           paper_top1=73.3, affine=False, video_length=32, sample_rate=2, **_PAPER),
    _model("i3d_nonlocal_32x2_IN_pretrain_400k", "run_i3d_nlnet_400k_32f.sh", PAPER, 74.9, 91.6,
           paper_top1=74.9, affine=False, video_length=32, sample_rate=2, **_PAPER),
    _model("i3d_baseline_128x1_I3D_pretrain_400k", "run_i3d_baseline_affine_400k_128f.sh", PAPER, 75.2, 92.0,
           paper_top1=74.9, affine=True, video_length=128, sample_rate=1, **_PAPER),
    _model("i3d_nonlocal_128x1_I3D_pretrain_400k", "run_i3d_nlnet_affine_400k_128f.sh", PAPER, 76.5, 92.7,
           paper_top1=76.5, affine=True, video_length=128, sample_rate=1, **_PAPER),
    # "Modifications for improving speed": 8x8 and 32x4 clips, resnet_video.
    _model("c2d_baseline_8x8_IN_pretrain_400k", "run_c2d_baseline_400k.sh", SPEED, 71.9, 90.0,
           affine=False, video_length=8, sample_rate=8, **_SPEED),
    _model("c2d_nonlocal_8x8_IN_pretrain_400k", "run_c2d_nlnet_400k.sh", SPEED, 74.4, 91.4,
           affine=False, video_length=8, sample_rate=8, **_SPEED),
    _model("i3d_baseline_8x8_IN_pretrain_400k", "run_i3d_baseline_400k.sh", SPEED, 73.4, 90.9,
           affine=False, video_length=8, sample_rate=8, **_SPEED),
    _model("i3d_nonlocal_8x8_IN_pretrain_400k", "run_i3d_nlnet_400k.sh", SPEED, 74.7, 91.6,
           affine=False, video_length=8, sample_rate=8, **_SPEED),
    _model("i3d_baseline_32x4_I3D_pretrain_400k", "run_i3d_baseline_affine_400k.sh", SPEED, 75.5, 92.0,
           affine=True, video_length=32, sample_rate=4, **_SPEED),
    _model("i3d_nonlocal_32x4_I3D_pretrain_400k", "run_i3d_nlnet_affine_400k.sh", SPEED, 76.5, 92.6,
           affine=True, video_length=32, sample_rate=4, **_SPEED),
    # "Fewer training iterations".
    _model("i3d_baseline_8x8_IN_pretrain_300k", "run_i3d_baseline_300k.sh", FEWER_ITERATIONS, 73.2, 90.8,
           affine=False, video_length=8, sample_rate=8, **_SPEED),
    # "Training with fewer GPUs" (4 GPUs, data downloaded 12/20/2017).
    _model("i3d_baseline_8x8_IN_pretrain_600k_4gpu", "run_i3d_baseline_600k_4gpu.sh", FOUR_GPUS, 73.0, 90.4,
           affine=False, video_length=8, sample_rate=8, **_SPEED),
    _model("i3d_baseline_8x8_IN_pretrain_300k_4gpu", "run_i3d_baseline_300k_4gpu.sh", FOUR_GPUS, 72.0, 90.1,
           affine=False, video_length=8, sample_rate=8, dropout=0.0, **_SPEED),
)
_BY_NAME = {model.name: model for model in ZOO}


def zoo_names() -> list[str]:
    return [model.name for model in ZOO]


def zoo_model(name: str) -> ZooModel:
    """The zoo entry called ``name`` (a ConfigError naming the closest names otherwise)."""
    try:
        return _BY_NAME[name]
    except KeyError:
        close = difflib.get_close_matches(str(name), zoo_names(), n=3, cutoff=0.6)
        hint = f"did you mean {', '.join(close)}?" if close else "`nlflow weights list` shows them"
        raise ConfigError(f"{name!r} is not a released video-nonlocal-net model ({hint})") from None


def zoo_model_for_file(path: str | os.PathLike) -> ZooModel | None:
    """The entry whose released file name (``<name>.pkl``) ``path`` carries, if any."""
    return _BY_NAME.get(Path(path).stem)


# --- the starting points of the original's recipes: pretrained_model.tar.gz --------------------------

TARBALL = "pretrained_model.tar.gz"
TARBALL_URL = "https://dl.fbaipublicfiles.com/video-nonlocal/pretrained_model.tar.gz"


@dataclass(frozen=True)
class PretrainedStart:
    """A member of the original's ``pretrained_model.tar.gz``: what its Kinetics recipes start from
    (``TRAIN.PARAMS_FILE`` of ``scripts/*.sh``). It fixes only what its tensors fix: the depth and
    width of the ImageNet ResNets (2-D: they inflate into C2D or I3D, any clip), and for the affine
    model also the I3D architecture and the frozen BN its ``_s``/``_b`` blobs are (no statistics)."""

    name: str
    member: str  # its path in the tarball, below the tarball's top folder
    what: str
    settings: tuple[tuple[str, Any], ...]
    scripts: tuple[str, ...]  # the recipes that start from it

    @property
    def url(self) -> str:
        return TARBALL_URL

    def model_settings(self) -> dict[str, Any]:
        return dict(self.settings)


_IMAGENET_RECIPES = ("run_c2d_baseline_400k.sh", "run_c2d_baseline_400k_32f.sh", "run_c2d_nlnet_400k.sh",
                     "run_c2d_nlnet_400k_32f.sh", "run_i3d_baseline_300k.sh", "run_i3d_baseline_300k_4gpu.sh",
                     "run_i3d_baseline_400k.sh", "run_i3d_baseline_400k_32f.sh", "run_i3d_baseline_600k_4gpu.sh",
                     "run_i3d_nlnet_400k.sh", "run_i3d_nlnet_400k_32f.sh")
STARTS: tuple[PretrainedStart, ...] = (
    PretrainedStart("r50_pretrain_c2_model_iter450450_clean", "r50_pretrain_c2_model_iter450450_clean.pkl",
                    "ImageNet ResNet-50 (2-D kernels)", (("depth", 50), ("width", 64)), _IMAGENET_RECIPES),
    # README, "Script details" 4: TRAIN.PARAMS_FILE r101_..., MODEL.DEPTH 101, VIDEO_ARC_CHOICE 3 / 4.
    PretrainedStart("r101_pretrain_c2_model_iter450450_clean", "r101_pretrain_c2_model_iter450450_clean.pkl",
                    "ImageNet ResNet-101 (2-D kernels)", (("depth", 101), ("width", 64)), ()),
    # README, "Script details" 3: run_i3d_baseline_400k.sh's model, BN turned into affine layers by
    # process_data/convert_models/modify_caffe2_ftvideo.py.
    PretrainedStart("run_i3d_baseline_400k_affine_model_400k", "run_i3d_baseline_400k/affine_model_400k.pkl",
                    "run_i3d_baseline_400k.sh's I3D ResNet-50 with BN folded into affine layers",
                    (("arch", "i3d"), ("depth", 50), ("width", 64), ("frozen_bn", True)),
                    ("run_i3d_baseline_affine_400k.sh", "run_i3d_nlnet_affine_400k.sh")),
)
_STARTS_BY_NAME = {start.name: start for start in STARTS}


def start_names() -> list[str]:
    return [start.name for start in STARTS]


def zoo_entry(name: str) -> ZooModel | PretrainedStart:
    """A released model or a starting point by name (a ConfigError naming the closest names otherwise)."""
    if name in _STARTS_BY_NAME:
        return _STARTS_BY_NAME[name]
    if name in _BY_NAME:
        return _BY_NAME[name]
    close = difflib.get_close_matches(str(name), zoo_names() + start_names(), n=3, cutoff=0.6)
    hint = f"did you mean {', '.join(close)}?" if close else "`nlflow weights list` shows them"
    raise ConfigError(f"{name!r} is neither a released video-nonlocal-net model nor a file of {TARBALL} ({hint})")


def zoo_entry_for_file(path: str | os.PathLike) -> ZooModel | PretrainedStart | None:
    """The released model or starting point whose file name ``path`` carries, if any."""
    stem = Path(path).stem
    return _BY_NAME.get(stem) or _STARTS_BY_NAME.get(stem) or next(
        (start for start in STARTS if Path(path).as_posix().endswith(start.member)), None)


def format_zoo_table() -> str:
    """The zoo as a text table: name, frames x rate, arch, non-local, affine, top-1 / top-5."""
    header = ("name", "clip", "arch", "NL", "affine", "top-1", "top-5", "script")
    rows = [
        (m.name, m.clip, m.arch, "yes" if m.use_nonlocal else "-", "yes" if m.affine else "-",
         f"{m.top1:.1f}", f"{m.top5:.1f}", m.script)
        for m in ZOO
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in [header, *rows]]
    starts = [f"  {start.name:<42} {start.what}; fixes {', '.join(f'{k}={v}' for k, v in start.settings)}"
              for start in STARTS]
    return "\n".join(lines + [
        "", f"{len(ZOO)} Kinetics-400 models, ResNet-50; files at {ZOO_URL}",
        "Fine-tune one: set `pretrained.name: <name>` in the config (the model keys follow from the name).",
        "Offline: also set `pretrained.pkl:` to your copy of <name>.pkl, or to a folder holding it.",
        "", f"Starting points of the original's recipes, members of {TARBALL_URL}:", *starts,
    ])


# --- the workflow config: pretrained.name -> model settings ----------------------------------------

# Keys of the config's `model` section a zoo entry may fix, and the ones a config without
# pretrained.name must set itself (the others default to ModelConfig's defaults).
ZOO_MODEL_KEYS = (
    "arch", "depth", "use_nonlocal", "width", "video_length", "sample_rate",
    "stem_temporal_stride", "frozen_bn", "nonlocal_norm", "nonlocal_temporal_group",
)
REQUIRED_WITHOUT_ZOO = ("arch", "depth", "use_nonlocal", "video_length", "sample_rate")
_MODEL_DEFAULTS = {f.name: f.default for f in dataclasses.fields(ModelConfig)}


def network_of_config(config: Mapping[str, Any], num_classes: int) -> ModelConfig:
    """The network a workflow config describes: its ``model`` section completed from its
    ``pretrained`` section (``nlflow weights convert --config``)."""
    model = resolve_pretrained(config.get("model") or {}, config.get("pretrained") or {}).model
    known = {f.name for f in dataclasses.fields(ModelConfig)}
    return ModelConfig(num_classes=num_classes, **{key: value for key, value in model.items()
                                                    if key in known and value is not None})


@dataclass(frozen=True)
class PretrainedSource:
    """What the config's ``pretrained`` section resolves to."""

    model: dict[str, Any]  # the config's model section with every ZOO_MODEL_KEYS value set
    name: str | None  # zoo entry (which network and which weights), or None
    pkl: str | None  # where the Caffe2 file is: with a name, a local copy of the zoo's file; None

    @property
    def url(self) -> str | None:
        return zoo_entry(self.name).url if self.name else None

    @property
    def sources(self) -> list[str]:
        """Where download_weights takes the zoo file from: the local copy, else the zoo's URL."""
        if not self.name:
            return []
        return [str(local_zoo_file(self.name, self.pkl))] if self.pkl else [zoo_model(self.name).url]


def offline_hint(name: str) -> str:
    """What a failed download of zoo model ``name`` tells the user to do instead."""
    return (f"without a network, download {name}.pkl elsewhere and set pretrained.pkl to that file (or to a "
            "folder holding it) next to pretrained.name; or set pretrained.name: null to train from scratch")


def local_zoo_file(name: str, pkl: str | os.PathLike) -> Path:
    """The local copy of zoo model ``name`` that ``pretrained.pkl`` points at: the file itself, or
    ``<name>.pkl`` in a folder (a folder of downloaded zoo files serves every name)."""
    path = Path(pkl)
    return path / f"{name}.pkl" if path.is_dir() else path


def resolve_pretrained(model: Mapping[str, Any], pretrained: Mapping[str, Any],
                       expand: Callable[[str], str] = lambda text: text) -> PretrainedSource:
    """Complete the config's ``model`` section from ``pretrained.name``'s zoo entry; one
    ConfigError naming every problem (see :func:`check_pretrained`)."""
    source, problems = check_pretrained(model, pretrained, expand)
    if problems:
        raise ConfigError(problems_message(problems, "the model and pretrained sections"))
    assert source is not None
    return source


def check_pretrained(model: Mapping[str, Any], pretrained: Mapping[str, Any],
                     expand: Callable[[str], str] = lambda text: text) -> tuple[PretrainedSource | None, list[str]]:
    """The ``model`` section completed from ``pretrained.name``'s zoo entry, and every problem.

    A key left out (or null) takes the zoo's value, then ModelConfig's default; a key set to
    another value than the zoo's is a problem naming both values. Without a name,
    ``REQUIRED_WITHOUT_ZOO`` must be set. ``pretrained.name`` with ``pretrained.pkl``: the name
    says which network (and which released weights), ``pkl`` where a copy of its file is (offline:
    a file, or a folder holding ``<name>.pkl``), which must exist and must not be another zoo
    model's file. ``expand`` rewrites the configured path (the workflow's ``{results_dir}``).
    """
    name, pkl = pretrained.get("name"), pretrained.get("pkl")
    if pkl is not None:
        pkl = expand(pkl)
    resolved = dict(model)
    problems: list[str] = []
    if name is not None:
        try:
            entry = zoo_entry(name)
        except ConfigError as exc:
            return None, [str(exc)]
        for key, zoo_value in entry.model_settings().items():
            given = resolved.get(key)
            if given is None:
                resolved[key] = zoo_value
            elif given != zoo_value or type(given) is not type(zoo_value):
                problems.append(
                    f"model.{key} is {given!r} in the config but {zoo_value!r} for the zoo model {name} "
                    f"(pretrained.name): leave model.{key} out to take the zoo's value"
                )
        if pkl is not None:
            problems += _local_zoo_file_problems(name, pkl)
    missing = [key for key in REQUIRED_WITHOUT_ZOO if resolved.get(key) is None]
    if missing:
        hint = (f"{name} fixes only {', '.join(zoo_entry(name).model_settings())}" if name
                else "or set pretrained.name to take them from the model zoo")
        problems.append(f"model.{', model.'.join(missing)} must be set ({hint})")
    if problems:
        return None, problems
    for key in ZOO_MODEL_KEYS:
        if resolved.get(key) is None:
            resolved[key] = _MODEL_DEFAULTS[key]
    return PretrainedSource(model=resolved, name=name, pkl=pkl), []


def _local_zoo_file_problems(name: str, pkl: str) -> list[str]:
    path = local_zoo_file(name, pkl)
    shown = shown_path(path)
    if not path.is_file():
        where = f"the folder pretrained.pkl {shown_path(pkl)} holds no {name}.pkl" if Path(pkl).is_dir() else \
            f"pretrained.pkl {shown} does not exist"
        return [f"{where}: pretrained.pkl is where your copy of the zoo model {name} is (a file, or a folder "
                f"holding {name}.pkl; download it from {zoo_model(name).url}), or leave it out to download it"]
    other = zoo_model_for_file(path)
    if other is not None and other.name != name:
        return [f"pretrained.pkl {shown} is the released file of {other.name}, but pretrained.name is {name}: "
                "set the name of the network the file holds"]
    return []
