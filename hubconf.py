"""torch.hub entry points: one per released video-nonlocal-net Kinetics-400 model (``nlflow weights list``).

    model = torch.hub.load("path/to/nlflow", "i3d_nonlocal_8x8_IN_pretrain_400k", source="local", pretrained=True)

``pretrained=False`` builds the network; ``pretrained=True`` downloads the released Caffe2 file
(checksum-locked) and converts it (nlflow.weights.hub). The models take normalised clips
[N, 3, T, H, W] ((x - 114.75) / 57.375, RGB); ``model.forward_map`` is the original's test mode.
"""

import os
import sys

# A checkout fetched by torch.hub is not installed: import nlflow from its src/ folder.
_SRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "src")
if _SRC not in sys.path:
    sys.path.insert(0, _SRC)

from nlflow.weights.hub import hub_entrypoints as _hub_entrypoints  # noqa: E402

dependencies = ["torch", "numpy", "tqdm"]

globals().update(_hub_entrypoints())
