"""From test views to per-view scores: the network run fully convolutionally over batches of
views (the original's test), one softmax per view averaged over the output positions.

Evaluation and ``nlflow predict`` both score through :class:`ViewScorer`, so they cannot disagree.
"""

from __future__ import annotations

from typing import Iterable, Iterator

import numpy as np
import torch
from torch import nn

from nlflow.device_memory import MemoryProbe, OutOfMemoryError
from nlflow.errors import EvaluationError
from nlflow.train.precision import tf32_allowed
from nlflow.video.views import to_network_input

TEST_AMP_MODES = ("none", "bf16")


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def logit_map_to_view_scores(logit_map: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """[N, C, t, h, w] logits -> (probs [N, C], logits [N, C]) in float32.

    probs = softmax over classes at every position, then the mean over positions (the original's
    fully-convolutional test); logits = the position-averaged logits.
    """
    flat = logit_map.float().flatten(2)
    return torch.softmax(flat, dim=1).mean(dim=2), flat.mean(dim=2)


class ViewScorer:
    """Runs a network over test views in batches of ``batch_size`` views: the one code path from
    views to per-view scores, shared by :func:`nlflow.evaluate.run.evaluate` and :mod:`nlflow.predict`.

    ``amp``: "none" (IEEE float32, no TF32 on a GPU: the original's precision and the default) or
    "bf16" (autocast, on any device; the scores are computed in float32 from the bf16 logits, and
    differ from float32 ones by more than float noise). ``forward_calls`` counts network
    invocations (tests use it to prove a resumed run computes nothing).
    """

    def __init__(self, model: nn.Module, batch_size: int = 30, device: torch.device | str | None = None, amp: str = "none"):
        if batch_size < 1:
            raise EvaluationError(f"batch_size must be at least 1, got {batch_size}")
        if amp not in TEST_AMP_MODES:
            raise EvaluationError(f"test precision must be one of {', '.join(TEST_AMP_MODES)}, got {amp!r}")
        self.device = torch.device(device) if device is not None else default_device()
        self.model = model.to(self.device).eval()
        self.batch_size = int(batch_size)
        self.amp = amp == "bf16"
        self.forward_calls = 0
        self.memory = MemoryProbe.start(self.device)

    @property
    def precision(self) -> str:
        return "bf16-autocast" if self.amp else "fp32"

    @torch.inference_mode()
    def _forward(self, batch: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        batch = to_network_input(batch, self.device)
        self.forward_calls += 1
        try:
            # IEEE float32 where autocast leaves float32 (all of it without amp): no TF32 on a GPU.
            with tf32_allowed(False), torch.autocast(device_type=self.device.type, dtype=torch.bfloat16,
                                                     enabled=self.amp):
                logit_map = self.model.forward_map(batch)
        except OutOfMemoryError as exc:
            raise EvaluationError(self._out_of_memory_message(len(batch), exc)) from None
        probs, logits = logit_map_to_view_scores(logit_map)
        return probs.cpu().numpy(), logits.cpu().numpy()

    def _out_of_memory_message(self, views: int, error: BaseException) -> str:
        head = f"{self.device.type.upper()} out of memory with {views} views per forward pass (test.batch_size {self.batch_size})"
        fits = self.memory.fitting_batch(views, error)
        if fits is None or fits >= views:
            return f"{head}: set test.batch_size lower"
        if fits < 1:
            return f"{head}: not even one view fits next to the weights; use a GPU with more memory"
        return f"{head}: set test.batch_size to {fits} or lower (estimated from the memory this pass needed)"

    def score(self, views: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """Views of one video -> (probs [V, C], logits [V, C]).

        Views are uint8 frames [V, T, S, S, 3] (normalised on the device) or network input [V, 3, T, S, S].
        """
        ((_, probs, logits),) = self.stream([(None, views)])
        return probs, logits

    def stream(self, items: Iterable[tuple[object, torch.Tensor]]) -> Iterator[tuple[object, np.ndarray, np.ndarray]]:
        """Score ``(key, views)`` pairs, packing views of several videos into each forward batch.

        Yields ``(key, probs [V, C], logits [V, C])`` in input order as soon as a video's views are done.
        """
        pending: list[torch.Tensor] = []  # views not yet forwarded, in order
        pending_count = 0
        owners: list[list] = []  # [key, views still to come back, list of result parts]

        def run(count: int) -> Iterator[tuple[object, np.ndarray, np.ndarray]]:
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
            probs, logits = self._forward(torch.cat(parts) if len(parts) > 1 else parts[0])
            row = 0
            while row < len(probs):
                owner = owners[0]
                take = min(owner[1], len(probs) - row)
                owner[2].append((probs[row : row + take], logits[row : row + take]))
                owner[1] -= take
                row += take
                if owner[1] == 0:
                    owners.pop(0)
                    yield owner[0], np.concatenate([p for p, _ in owner[2]]), np.concatenate([l for _, l in owner[2]])

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
