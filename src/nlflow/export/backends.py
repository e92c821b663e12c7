"""Exported test-mode networks (``nlflow export``'s ``.onnx`` and ``.pt2`` files) loaded for inference.

Each file holds :class:`nlflow.models.test_mode.ViewScores` for one view size: normalised views
``views`` [N, 3, T, S, S] float32 (RGB, ``(x - 114.75) / 57.375``) in, ``probs`` and ``logits``
[N, C] out, N free. Next to the graph it carries :class:`ExportInfo` (the model config, class
names, view size and the source checkpoint's SHA-256): in the ONNX model's ``metadata_props``
under ``nlflow``, in the ``.pt2`` archive as the extra file ``nlflow.json``. A loaded file is a
callable that :class:`nlflow.evaluate.scorer.ViewScorer` runs like the ``.pt`` network.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator

import torch

from nlflow.errors import NlflowError, one_line

INFO_FORMAT = "nlflow-export"
INFO_VERSION = 1
INFO_KEY = "nlflow"  # ONNX metadata_props key
PT2_INFO_FILE = "nlflow.json"  # torch.export extra file
INPUT_NAME = "views"
OUTPUT_NAMES = ("probs", "logits")
ONNX_SUFFIX, PT2_SUFFIX = ".onnx", ".pt2"
EXPORTED_SUFFIXES = (ONNX_SUFFIX, PT2_SUFFIX)
ONNX_PACKAGES = ("onnx", "onnxscript", "onnxruntime")
INSTALL_HINT = 'pip install -e ".[export]"'


class ExportError(NlflowError):
    """A network cannot be exported, an exported file cannot be read, or the export lost parity."""


@dataclass(frozen=True)
class ExportInfo:
    """What an exported file says about its network besides the graph."""

    model_config: dict[str, Any]
    classes: list[str] | None
    view_size: int  # the exported input's S: test scale = crop, as predict's views of the checkpoint
    checkpoint_sha256: str

    @property
    def video_length(self) -> int:
        return int(self.model_config["video_length"])

    def input_shape(self, views: int) -> tuple[int, int, int, int, int]:
        return (views, 3, self.video_length, self.view_size, self.view_size)

    def to_json(self) -> str:
        return json.dumps({"format": INFO_FORMAT, "version": INFO_VERSION, **asdict(self)}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes, where: Path) -> "ExportInfo":
        try:
            data = json.loads(text)
            if data.get("format") != INFO_FORMAT or data.get("version") != INFO_VERSION:
                raise ValueError(f"format {data.get('format')!r} version {data.get('version')!r}")
            return cls(dict(data["model_config"]), data["classes"], int(data["view_size"]), str(data["checkpoint_sha256"]))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ExportError(f"{where}: its nlflow information is unreadable ({one_line(exc)}); export the checkpoint again") from None


@contextlib.contextmanager
def quiet_torch_export() -> Iterator[None]:
    """torch.export's pytree code warns about its own use of a deprecated class (nothing a user can change)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning, message=".*LeafSpec")
        yield


def require_onnx_packages(purpose: str) -> None:
    """One clear error, before any work, when the ``[export]`` extra is not installed."""
    missing = [name for name in ONNX_PACKAGES if importlib.util.find_spec(name) is None]
    if missing:
        raise ExportError(f"{purpose} needs {', '.join(missing)} (the export extra): {INSTALL_HINT}")


class OnnxViewScores:
    """An exported ``.onnx`` file run by onnxruntime on the CPU, with as many threads as torch uses."""

    backend = "onnxruntime"
    device = torch.device("cpu")

    def __init__(self, path: str | os.PathLike, threads: int | None = None):
        require_onnx_packages(f"running {path}")
        import onnxruntime

        self.path = Path(path)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = int(threads or torch.get_num_threads())
        try:
            self.session = onnxruntime.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types for bad files
            raise ExportError(f"cannot load {self.path} with onnxruntime: {one_line(exc)}") from None
        text = self.session.get_modelmeta().custom_metadata_map.get(INFO_KEY)
        if text is None:
            raise ExportError(f"{self.path} is not an nlflow export (no {INFO_KEY!r} metadata): make it with `nlflow export`")
        self.info = ExportInfo.from_json(text, self.path)

    def __call__(self, views: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feed = {INPUT_NAME: views.detach().to("cpu", torch.float32).contiguous().numpy()}
        probs, logits = self.session.run(list(OUTPUT_NAMES), feed)
        return torch.from_numpy(probs), torch.from_numpy(logits)


class Pt2ViewScores:
    """An exported ``.pt2`` file (torch.export) run by PyTorch on the CPU."""

    backend = "torch.export"
    device = torch.device("cpu")

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        extra = {PT2_INFO_FILE: ""}
        try:  # from an open file: torch.export.load wants a name ending in .pt2, and a temporary one does not
            with open(self.path, "rb") as handle, quiet_torch_export():
                program = torch.export.load(handle, extra_files=extra)
        except Exception as exc:  # a damaged or foreign archive fails in many ways inside torch
            raise ExportError(f"cannot load {self.path} with torch.export: {one_line(exc)}") from None
        if not extra[PT2_INFO_FILE]:
            raise ExportError(f"{self.path} is not an nlflow export (no {PT2_INFO_FILE}): make it with `nlflow export`")
        self.info = ExportInfo.from_json(extra[PT2_INFO_FILE], self.path)
        self.module = program.module()

    def __call__(self, views: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            probs, logits = self.module(views.to("cpu", torch.float32))
        return probs, logits


def is_exported(path: str | os.PathLike) -> bool:
    return Path(path).suffix in EXPORTED_SUFFIXES


def load_exported(path: str | os.PathLike, suffix: str | None = None) -> OnnxViewScores | Pt2ViewScores:
    """The view network in an ``.onnx`` or ``.pt2`` file made by ``nlflow export``; ``suffix``
    says which kind when the file's own name does not (a temporary name)."""
    path = Path(path)
    suffix = suffix or path.suffix
    if not path.is_file():
        raise ExportError(f"exported network not found: {path}")
    if suffix == ONNX_SUFFIX:
        return OnnxViewScores(path)
    if suffix == PT2_SUFFIX:
        return Pt2ViewScores(path)
    raise ExportError(f"{path}: an exported network ends in {' or '.join(EXPORTED_SUFFIXES)}")
