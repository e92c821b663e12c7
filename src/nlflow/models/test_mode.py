"""The network in the original's test mode, as modules that map a batch of views to per-view arrays.

:class:`ViewScores` is what evaluation, ``nlflow predict`` and ``nlflow export`` run: the
fully-convolutional test (pool5 with the training kernel cut to the feature map, ``pred`` as a
1x1x1 convolution, a softmax at every position, the mean over positions), returning each view's
probabilities and position-averaged logits. :class:`ViewEmbeddings` returns the pool5 output
averaged over positions instead (``nlflow features``). Both are plain ``nn.Module``\\ s of the
network, so the exported graph is this very code.
"""

from __future__ import annotations

import torch
from torch import nn

from nlflow.models.resnet3d import ResNet3D


def logit_map_to_view_scores(logit_map: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """[N, C, t, h, w] logits -> (probs [N, C], logits [N, C]) in float32.

    probs = softmax over classes at every position, then the mean over positions (the original's
    fully-convolutional test); logits = the position-averaged logits.
    """
    flat = logit_map.float().flatten(2)
    return torch.softmax(flat, dim=1).mean(dim=2), flat.mean(dim=2)


class ViewScores(nn.Module):
    """Normalised views [N, 3, T, S, S] -> (probs [N, C], logits [N, C]): what evaluation scores per view."""

    def __init__(self, model: ResNet3D) -> None:
        super().__init__()
        self.model = model

    def forward(self, views: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return logit_map_to_view_scores(self.model.forward_map(views))


class ViewEmbeddings(nn.Module):
    """Normalised views [N, 3, T, S, S] -> (embeddings [N, D],): the pool5 output averaged over
    its positions, D = the res5 channels (2048 at full width). ``pred`` is linear, so these are
    what the classifier sees: its logits are ``fc(embedding)`` averaged the same way."""

    def __init__(self, model: ResNet3D) -> None:
        super().__init__()
        self.model = model

    def forward(self, views: torch.Tensor) -> tuple[torch.Tensor]:
        pooled = self.model.head.pool5(self.model.features(views))
        return (pooled.float().flatten(2).mean(dim=2),)
