"""``nlflow export CHECKPOINT OUT``: the test-mode network as ``OUT.onnx`` and ``OUT.pt2``, with parity checked.

The exported graph is :class:`nlflow.models.test_mode.ViewScores` of the checkpoint's network,
traced once by ``torch.export`` at the view size ``nlflow predict`` uses for the checkpoint (its
test scale: pool5's kernel, cut to the feature map, and the non-local blocks' shapes are fixed
by it) with the number of views N free. The ``.pt2`` file is that program
(``torch.export.save``); the ``.onnx`` file is the same program through the ONNX exporter
PyTorch recommends (``torch.onnx.export(..., dynamo=True)``).

Both files are written under temporary names, loaded back from disk, and run on a probe batch of
views of another size than the traced one: each must give the eager network's probabilities
within ``tolerance`` and the same best class for every view, or neither file is kept.
"""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import torch
from tqdm import tqdm

from nlflow.errors import one_line
from nlflow.export.backends import (
    EXPORTED_SUFFIXES,
    INFO_KEY,
    INPUT_NAME,
    ONNX_SUFFIX,
    OUTPUT_NAMES,
    PT2_INFO_FILE,
    PT2_SUFFIX,
    ExportError,
    ExportInfo,
    load_exported,
    quiet_torch_export,
    require_onnx_packages,
)
from nlflow.fileio import atomic_path, file_digest
from nlflow.models.checkpoint import checkpoint_test_scale, load_checkpoint, read_checkpoint
from nlflow.models.test_mode import ViewScores

log = logging.getLogger(__name__)

FORMATS = ("onnx", "pt2")
SUFFIX = {"onnx": ONNX_SUFFIX, "pt2": PT2_SUFFIX}
TRACE_VIEWS = 2  # views in the traced example; the probe runs another count (1), so a fixed N would show
PROBE_VIEWS = 1
TOLERANCE = 1e-4  # on probabilities, as the parity requirement


@dataclass(frozen=True)
class Parity:
    """An exported file against the eager network on the probe views."""

    path: Path
    backend: str
    views: int
    max_prob_difference: float
    max_logit_difference: float
    same_top1: int  # views whose best class agrees

    @property
    def ok(self) -> bool:
        return self.same_top1 == self.views

    def summary(self) -> str:
        return (f"{self.path} ({self.backend}): max |probability difference| {self.max_prob_difference:.2e}, "
                f"max |logit difference| {self.max_logit_difference:.2e}, same best class on "
                f"{self.same_top1}/{self.views} probe views")


@dataclass
class ExportReport:
    info: ExportInfo
    parity: list[Parity] = field(default_factory=list)

    def summary(self) -> str:
        shape = "x".join(str(d) for d in self.info.input_shape(1)[1:])
        head = f"exported views [N, {shape}] -> probs, logits [N, {self.info.model_config['num_classes']}]"
        return "\n".join([head, *(p.summary() for p in self.parity)])


def export_paths(out: str | os.PathLike, formats: Sequence[str] = FORMATS) -> dict[str, Path]:
    """``OUT.onnx`` and ``OUT.pt2`` (an ``OUT`` that already ends in one of them loses that suffix)."""
    out = Path(out)
    stem = out.with_suffix("") if out.suffix in EXPORTED_SUFFIXES else out
    unknown = [name for name in formats if name not in FORMATS]
    if unknown or not formats:
        raise ExportError(f"export formats must be among {', '.join(FORMATS)}, got {', '.join(formats) or 'none'}")
    return {name: stem.with_name(stem.name + SUFFIX[name]) for name in formats}


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """The ONNX exporter logs a warning for every optional operator library it does not find
    (torchvision's); none of them concerns this network."""
    registration = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = registration.level
    registration.setLevel(logging.ERROR)
    try:
        with quiet_torch_export():
            yield
    finally:
        registration.setLevel(level)


def trace(network: ViewScores, info: ExportInfo) -> torch.export.ExportedProgram:
    """``network`` as a torch.export program with the number of views free."""
    example = torch.randn(info.input_shape(TRACE_VIEWS), generator=torch.Generator().manual_seed(0))
    views = torch.export.Dim("views", min=1)
    try:
        with quiet_torch_export():
            return torch.export.export(network, (example,), dynamic_shapes=({0: views},))
    except Exception as exc:  # torch.export reports untraceable code with many exception types
        raise ExportError(f"torch.export could not trace the network: {type(exc).__name__}: {one_line(exc)}") from exc


def write_pt2(program: torch.export.ExportedProgram, info: ExportInfo, path: Path) -> None:
    # Into an open file: torch.export.save wants a name ending in .pt2, and the temporary one does not.
    with open(path, "wb") as handle, quiet_torch_export():
        torch.export.save(program, handle, extra_files={PT2_INFO_FILE: info.to_json()})


def write_onnx(program: torch.export.ExportedProgram, info: ExportInfo, path: Path) -> None:
    try:
        with _quiet_exporter():
            onnx_program = torch.onnx.export(
                program, dynamo=True, verbose=False, input_names=[INPUT_NAME], output_names=list(OUTPUT_NAMES),
                dynamic_shapes=({0: "views"},),
            )
    except Exception as exc:  # the exporter's own errors name the operator it could not translate
        raise ExportError(f"the ONNX exporter failed: {type(exc).__name__}: {one_line(exc)}") from exc
    onnx_program.model.metadata_props[INFO_KEY] = info.to_json()
    onnx_program.save(path)


def check_parity(network: ViewScores, path: Path, written: Path, tolerance: float = TOLERANCE) -> Parity:
    """The file at ``written`` (``path`` once renamed) against the eager ``network`` on random views."""
    exported = load_exported(written, path.suffix)
    probe = torch.randn(exported.info.input_shape(PROBE_VIEWS), generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        expected_probs, expected_logits = network(probe)
    probs, logits = exported(probe)
    parity = Parity(
        path=path, backend=exported.backend, views=PROBE_VIEWS,
        max_prob_difference=float((probs - expected_probs).abs().max()),
        max_logit_difference=float((logits - expected_logits).abs().max()),
        same_top1=int((probs.argmax(1) == expected_probs.argmax(1)).sum()),
    )
    if not parity.ok or not parity.max_prob_difference <= tolerance:
        raise ExportError(f"the exported network does not match the checkpoint, nothing was kept: {parity.summary()} "
                          f"(tolerance {tolerance:g})")
    return parity


def export_checkpoint(checkpoint: str | os.PathLike, out: str | os.PathLike, *, formats: Sequence[str] = FORMATS,
                      tolerance: float = TOLERANCE) -> ExportReport:
    """Export ``checkpoint``'s test-mode network to ``OUT.onnx`` / ``OUT.pt2``; every file is
    checked against the eager network before any is put in place (see the module docstring)."""
    paths = export_paths(out, formats)
    if "onnx" in paths:
        require_onnx_packages("ONNX export")
    checkpoint = Path(checkpoint)
    payload = read_checkpoint(checkpoint)
    model = load_checkpoint(checkpoint)
    info = ExportInfo(model_config=dict(payload["model_config"]), classes=payload.get("classes"),
                      view_size=checkpoint_test_scale(payload.get("extra") or {}),
                      checkpoint_sha256=file_digest(checkpoint))
    network = ViewScores(model).eval()
    report = ExportReport(info)
    steps = ["trace"] + [f"write {paths[name].name}" for name in paths] + [f"check {paths[name].name}" for name in paths]
    with tqdm(total=len(steps), desc="export", unit="step", disable=None) as bar, contextlib.ExitStack() as files:
        bar.set_postfix_str(steps[0])
        program = trace(network, info)
        bar.update(1)
        written = {name: files.enter_context(atomic_path(path)) for name, path in paths.items()}
        for name, path in paths.items():
            bar.set_postfix_str(f"write {path.name}")
            (write_onnx if name == "onnx" else write_pt2)(program, info, written[name])
            bar.update(1)
        for name, path in paths.items():
            bar.set_postfix_str(f"check {path.name}")
            report.parity.append(check_parity(network, path, written[name], tolerance))
            bar.update(1)
    for parity in report.parity:
        log.info("%s", parity.summary())
    return report
