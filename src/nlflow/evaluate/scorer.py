"""From test views to per-view arrays: a view network run over batches of views packed from
several videos (the original's fully-convolutional test when the network is
:class:`nlflow.models.test_mode.ViewScores`).

Evaluation and ``nlflow predict`` both score through :class:`ViewScorer`, so they cannot disagree;
``nlflow features`` runs :class:`nlflow.models.test_mode.ViewEmbeddings` through the same
:class:`ViewRunner`.
"""

from __future__ import annotations

from typing import Iterable, Iterator, Protocol

import numpy as np
import torch
from torch import nn

from nlflow.device_memory import MemoryProbe, OutOfMemoryError
from nlflow.errors import EvaluationError
from nlflow.models.resnet3d import ResNet3D
from nlflow.models.test_mode import ViewScores, logit_map_to_view_scores
from nlflow.train.precision import tf32_allowed
from nlflow.video.views import to_network_input

TEST_AMP_MODES = ("none", "bf16")

__all__ = ["TEST_AMP_MODES", "ExportedViewNetwork", "ViewRunner", "ViewScorer", "default_device",
           "logit_map_to_view_scores"]


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class ExportedViewNetwork(Protocol):
    """A view network loaded from an exported file (:mod:`nlflow.export.backends`): it runs in
    float32 on its own ``device`` and maps normalised views to a tuple of per-view arrays."""

    device: torch.device
    backend: str

    def __call__(self, views: torch.Tensor) -> tuple[torch.Tensor, ...]: ...


class ViewRunner:
    """Runs a view network over test views in batches of ``batch_size`` views, packing the views of
    several videos into each forward pass: the one code path from views to per-view arrays.

    ``network`` maps normalised views [N, 3, T, S, S] to a tuple of per-view arrays [N, ...]: an
    ``nn.Module`` (moved to ``device``, in eval mode) or an exported network, which runs in
    float32 where it was loaded. ``amp``: "none" (IEEE float32, no TF32 on a GPU: the original's precision
    and the default) or "bf16" (autocast, on any device; results differ from float32 ones by more than
    float noise). ``forward_calls`` counts network invocations (tests use it to prove a resumed
    run computes nothing).
    """

    def __init__(self, network: nn.Module | ExportedViewNetwork, batch_size: int = 30,
                 device: torch.device | str | None = None, amp: str = "none"):
        if batch_size < 1:
            raise EvaluationError(f"batch_size must be at least 1, got {batch_size}")
        if amp not in TEST_AMP_MODES:
            raise EvaluationError(f"test precision must be one of {', '.join(TEST_AMP_MODES)}, got {amp!r}")
        self.amp = amp == "bf16"
        if isinstance(network, nn.Module):
            self.device = torch.device(device) if device is not None else default_device()
            self.network = network.to(self.device).eval()
        else:
            self.device = network.device
            if device is not None and torch.device(device) != self.device:
                raise EvaluationError(f"the {network.backend} network runs on {self.device}, not {device}")
            if self.amp:
                raise EvaluationError(f"the {network.backend} network runs in float32: bf16 needs the .pt checkpoint")
            self.network = network
        self.batch_size = int(batch_size)
        self.forward_calls = 0
        self.memory = MemoryProbe.start(self.device)

    @property
    def precision(self) -> str:
        return "bf16-autocast" if self.amp else "fp32"

    @torch.inference_mode()
    def _forward(self, batch: torch.Tensor) -> tuple[np.ndarray, ...]:
        batch = to_network_input(batch, self.device)
        self.forward_calls += 1
        try:
            # IEEE float32 where autocast leaves float32 (all of it without amp): no TF32 on a GPU.
            with tf32_allowed(False), torch.autocast(device_type=self.device.type, dtype=torch.bfloat16,
                                                     enabled=self.amp):
                outputs = self.network(batch)
        except OutOfMemoryError as exc:
            raise EvaluationError(self._out_of_memory_message(len(batch), exc)) from None
        return tuple(output.float().cpu().numpy() for output in outputs)

    def _out_of_memory_message(self, views: int, error: BaseException) -> str:
        head = f"{self.device.type.upper()} out of memory with {views} views per forward pass (test.batch_size {self.batch_size})"
        fits = self.memory.fitting_batch(views, error)
        if fits is None or fits >= views:
            return f"{head}: set test.batch_size lower"
        if fits < 1:
            return f"{head}: not even one view fits next to the weights; use a GPU with more memory"
        return f"{head}: set test.batch_size to {fits} or lower (estimated from the memory this pass needed)"

    def stream(self, items: Iterable[tuple[object, torch.Tensor]]) -> Iterator[tuple[object, ...]]:
        """Run ``(key, views)`` pairs, packing views of several videos into each forward batch.

        Views are uint8 frames [V, T, S, S, 3] (normalised on the device) or network input
        [V, 3, T, S, S]. Yields ``(key, *arrays)``, each array [V, ...] of the network's outputs
        in order, as soon as a video's views are done, in input order.
        """
        pending: list[torch.Tensor] = []  # views not yet forwarded, in order
        pending_count = 0
        owners: list[list] = []  # [key, views still to come back, list of result parts]

        def run(count: int) -> Iterator[tuple[object, ...]]:
            nonlocal pending_count
            parts, needed = [], count
            while needed:  # slices, not copies, of the pending views; only the batch is joined
                head = pending[0]
                parts.append(head[:needed])
                if len(head) > needed:
                    pending[0] = head[needed:]
                    needed = 0
                else:
                    pending.pop(0)
                    needed -= len(head)
            pending_count -= count
            outputs = self._forward(torch.cat(parts) if len(parts) > 1 else parts[0])
            row, rows = 0, len(outputs[0])
            while row < rows:
                owner = owners[0]
                take = min(owner[1], rows - row)
                owner[2].append([output[row : row + take] for output in outputs])
                owner[1] -= take
                row += take
                if owner[1] == 0:
                    owners.pop(0)
                    yield (owner[0], *(np.concatenate(arrays) for arrays in zip(*owner[2])))

        for key, views in items:
            if views.ndim != 5 or len(views) == 0:
                raise EvaluationError(f"views must be uint8 [V, T, S, S, 3] or float [V, 3, T, S, S] with V >= 1, got {tuple(views.shape)}")
            owners.append([key, len(views), []])
            pending.append(views)
            pending_count += len(views)
            while pending_count >= self.batch_size:
                yield from run(self.batch_size)
        while pending_count:
            yield from run(min(pending_count, self.batch_size))


class ViewScorer(ViewRunner):
    """A :class:`ViewRunner` whose network scores views as the original's test does: a ResNet3D
    (run as :class:`~nlflow.models.test_mode.ViewScores`), or an exported ViewScores network.
    :meth:`stream` yields ``(key, probs [V, C], logits [V, C])``.
    """

    def __init__(self, model: nn.Module | ExportedViewNetwork, batch_size: int = 30,
                 device: torch.device | str | None = None, amp: str = "none"):
        super().__init__(ViewScores(model) if isinstance(model, ResNet3D) else model, batch_size, device, amp)

    def score(self, views: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """Views of one video -> (probs [V, C], logits [V, C]); views as :meth:`stream` takes them."""
        ((_, probs, logits),) = self.stream([(None, views)])
        return probs, logits
