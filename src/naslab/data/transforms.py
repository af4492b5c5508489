"""Image transforms shared by the datamodules.

Pipelines use the classic ``torchvision.transforms`` API because the published NAS recipes (DARTS,
NAO, ENAS) are written against it, so the augmentation matches theirs operation by operation.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
import torchvision.transforms as T


def cutout_mask(height: int, width: int, length: int, cy: int, cx: int) -> torch.Tensor:
    """(H, W) float mask that is 0 on a ``length`` square centred at (cy, cx), clipped at borders.

    Same arithmetic as the DARTS reference (``y1 = clip(y - length // 2)``, ``y2 = clip(y +
    length // 2)``), so a square reaching over a border simply loses the outside part.
    """
    mask = torch.ones(height, width)
    y1, y2 = max(cy - length // 2, 0), min(cy + length // 2, height)
    x1, x2 = max(cx - length // 2, 0), min(cx + length // 2, width)
    mask[y1:y2, x1:x2] = 0.0
    return mask


class Cutout:
    """DARTS-style Cutout: zero one ``length`` x ``length`` square of a normalised CHW tensor.

    The centre is uniform over the whole image (so the square may be clipped), drawn from torch's
    RNG rather than numpy's so DataLoader workers get distinct, seed_everything-controlled draws.
    Applied after normalisation, as in DARTS, so the hole is the dataset mean.
    """

    def __init__(self, length: int) -> None:
        if length < 1:
            raise ValueError(f"Cutout length must be >= 1, got {length}")
        self.length = length

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        h, w = image.shape[-2:]
        cy = int(torch.randint(h, (1,)).item())
        cx = int(torch.randint(w, (1,)).item())
        return image * cutout_mask(h, w, self.length, cy, cx).to(image.dtype)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(length={self.length})"


def build_pipeline(
    augment_ops: Sequence[Callable],
    mean: Sequence[float],
    std: Sequence[float],
    cutout: int = 0,
    to_tensor: bool = True,
) -> T.Compose:
    """``augment_ops`` -> ToTensor (for PIL input) -> Normalize -> Cutout (if ``cutout > 0``).

    One builder for train and eval pipelines keeps the normalisation identical between them.
    """
    ops: list[Callable] = list(augment_ops)
    if to_tensor:
        ops.append(T.ToTensor())
    ops.append(T.Normalize(tuple(mean), tuple(std)))
    if cutout > 0:
        ops.append(Cutout(cutout))
    return T.Compose(ops)
