"""Small image datasets held in memory as uint8 tensors, batched and augmented on tensors.

Per-item PIL transforms cost more than a small CNN's forward pass on a 2-core CPU; here a whole
batch is gathered, cropped, flipped and normalised with a few tensor ops. A `DataLoader` calls
`__getitems__` with all indices of a batch (also through `Subset`), and `collate_images` passes
the ready batch through.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset, default_collate

from ems_ray.errors import InputError


class ImageBatch(NamedTuple):
    """A batch already stacked by the dataset, so collation only unpacks it."""

    images: torch.Tensor
    labels: torch.Tensor


class InMemoryImageDataset(Dataset):
    """uint8 images (N, C, H, W) and int64 labels; returns normalised float32 images.

    With `augment`, each image is randomly cropped after zero-padding by `pad` pixels and
    flipped horizontally with probability 0.5 (the usual CIFAR/MNIST-style augmentation).
    `size` resizes (bilinear) after augmentation when the network expects another resolution.
    Random draws use torch's global generator, which `DataLoader` seeds per worker.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        mean: Sequence[float],
        std: Sequence[float],
        augment: bool = False,
        pad: int = 2,
        size: int | None = None,
        classes: Sequence[str] | None = None,
    ):
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise InputError(f"images must be uint8 (N, C, H, W), got {images.dtype} {tuple(images.shape)}")
        if len(images) != len(labels):
            raise InputError(f"{len(images)} images but {len(labels)} labels")
        self.images = images
        self.labels = labels.to(torch.int64)
        c = images.shape[1]
        # Normalise straight from uint8: (x/255 - mean)/std == (x - 255 mean) / (255 std).
        self._shift = torch.tensor([255.0 * m for m in mean]).view(1, c, 1, 1)
        self._scale = torch.tensor([1.0 / (255.0 * s) for s in std]).view(1, c, 1, 1)
        self.augment = augment
        self.pad = pad
        self.size = size
        n_classes = int(self.labels.max()) + 1 if len(labels) else 0
        self.classes = list(classes) if classes is not None else [str(i) for i in range(n_classes)]

    def __len__(self) -> int:
        return len(self.images)

    def view(self, augment: bool) -> InMemoryImageDataset:
        """The same tensors with augmentation switched on or off (train vs. validation)."""
        other = object.__new__(InMemoryImageDataset)
        other.__dict__.update(self.__dict__)
        other.augment = augment
        return other

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        batch = self.__getitems__([index])
        return batch.images[0], int(batch.labels[0])

    def __getitems__(self, indices: Sequence[int]) -> ImageBatch:
        idx = torch.as_tensor(indices, dtype=torch.int64)
        x = self.images[idx]
        if self.augment:
            x = self._crop_flip(x)
        x = (x.float() - self._shift) * self._scale
        if self.size is not None and self.size != x.shape[-1]:
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False, antialias=True)
        return ImageBatch(x, self.labels[idx])

    def _crop_flip(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        p = self.pad
        if p > 0:
            padded = F.pad(x, (p, p, p, p))
            dy = torch.randint(0, 2 * p + 1, (n, 1, 1))
            dx = torch.randint(0, 2 * p + 1, (n, 1))
            rows = (dy + torch.arange(h).view(1, h, 1)).expand(n, h, w)
            cols = (dx + torch.arange(w).view(1, w)).unsqueeze(1).expand(n, h, w)
            flip = torch.rand(n) < 0.5
            cols = torch.where(flip.view(n, 1, 1), cols.flip(-1), cols)
            batch = torch.arange(n).view(n, 1, 1).expand(n, h, w)
            # Advanced indexing over (batch, row, col) gathers every crop at once; channels ride along.
            return padded.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2).contiguous()
        flip = torch.rand(n) < 0.5
        return torch.where(flip.view(n, 1, 1, 1), x.flip(-1), x)


def collate_images(samples):
    """Pass through batches stacked by `__getitems__`; default collation for anything else."""
    if isinstance(samples, ImageBatch):
        return samples.images, samples.labels
    return default_collate(samples)
