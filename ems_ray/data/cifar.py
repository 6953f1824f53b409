"""CIFAR-10 from torchvision's python-pickle layout (`<root>/cifar-10-batches-py/`), never downloaded.

torchvision reads and checks the files; the images are then kept as one uint8 tensor so
augmentation (4-px padded random crop, horizontal flip) and normalisation run batched.
"""
from __future__ import annotations

from pathlib import Path

import torch

from .config import DataNotFoundError

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)


def load_cifar10(root: str | Path) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, list[str]]:
    """(train_images, train_labels, test_images, test_labels, classes); images uint8 (N, 3, 32, 32)."""
    from torchvision.datasets import CIFAR10

    out = []
    for train in (True, False):
        try:
            ds = CIFAR10(str(root), train=train, download=False)
        except RuntimeError as err:  # torchvision: "Dataset not found or corrupted"
            raise DataNotFoundError(
                f"CIFAR-10 not found (or failing its checksums) under {root}: expected "
                f"{Path(root) / 'cifar-10-batches-py'}/data_batch_1..5, test_batch, batches.meta "
                "(the 'CIFAR-10 python version' archive, extracted; torchvision.datasets.CIFAR10(root, "
                f"download=True) fetches it where the internet is reachable). torchvision said: {err}"
            ) from err
        out.append(torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous())
        out.append(torch.as_tensor(ds.targets, dtype=torch.int64))
    return (*out, list(ds.classes))  # type: ignore[return-value]
