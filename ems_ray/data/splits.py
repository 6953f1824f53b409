"""Train / validation / test splits built from a `DataConfig`.

Validation is carved out of the training set (sub-nets are ranked on it); the test split is kept
for final reports only, so search never sees it.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from torch.utils.data import Dataset, Subset

from ems_ray.errors import InputError

from .cifar import CIFAR10_MEAN, CIFAR10_STD, load_cifar10
from .config import DataConfig
from .fashion_mnist import FMNIST_CLASSES, FMNIST_MEAN, FMNIST_STD, load_fashion_mnist
from .image_folder import IMAGENET_MEAN, IMAGENET_STD, load_image_folder
from .tensor_dataset import InMemoryImageDataset

DEFAULT_IMAGEFOLDER_SIZE = 224
# Per-channel (mean, std) each dataset's images are normalised with: (pixel / 255 - mean) / std.
NORMALIZATION: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "fashion-mnist": (FMNIST_MEAN, FMNIST_STD),
    "cifar10": (CIFAR10_MEAN, CIFAR10_STD),
    "imagefolder": (IMAGENET_MEAN, IMAGENET_STD),
}


def normalization(cfg: DataConfig) -> dict[str, list[float]]:
    """The normalisation the model's input expects ({"mean", "std"} per channel), for a deployer."""
    mean, std = NORMALIZATION[cfg.name]
    return {"mean": list(mean), "std": list(std)}


@dataclass(frozen=True)
class Splits:
    """The three splits as torch Datasets yielding (normalised image, label)."""

    train: Dataset
    val: Dataset
    test: Dataset
    classes: list[str] = field(default_factory=list)

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def split_indices(n: int, val_size: int, seed: int) -> tuple[list[int], list[int]]:
    """(train, val) indices of a seeded permutation of range(n); the same for every process."""
    if val_size >= n:
        raise InputError(f"val_size: {val_size} must be smaller than the training set ({n} images)")
    perm = np.random.default_rng(seed).permutation(n)
    return sorted(perm[val_size:].tolist()), sorted(perm[:val_size].tolist())


def _head(indices: list[int], n: int | None) -> list[int]:
    return indices if n is None else indices[:n]


def build_splits(cfg: DataConfig) -> Splits:
    """Load the dataset named by `cfg` and split it (deterministic in `cfg.seed`).

    Subsets (`train_subset`, ...) take a seeded random sample of their split, so a quick config
    still covers every class.
    """
    if cfg.name == "imagefolder":
        size = cfg.image_size or DEFAULT_IMAGEFOLDER_SIZE
        train_aug, train_eval, test = load_image_folder(cfg.root, size)
        train_full = train_aug if cfg.augment else train_eval
        classes = list(train_eval.classes)
        n_train, n_test = len(train_eval), len(test)
    else:
        if cfg.name == "fashion-mnist":
            tr_x, tr_y, te_x, te_y = load_fashion_mnist(cfg.root)
            pad, classes = 2, list(FMNIST_CLASSES)
        else:
            tr_x, tr_y, te_x, te_y, classes = load_cifar10(cfg.root)
            pad = 4
        mean, std = NORMALIZATION[cfg.name]
        train_eval = InMemoryImageDataset(tr_x, tr_y, mean, std, augment=False, pad=pad, size=cfg.image_size, classes=classes)
        train_full = train_eval.view(augment=cfg.augment)
        test = InMemoryImageDataset(te_x, te_y, mean, std, augment=False, pad=pad, size=cfg.image_size, classes=classes)
        n_train, n_test = len(tr_x), len(te_x)

    train_idx, val_idx = split_indices(n_train, cfg.val_size, cfg.seed)
    rng = np.random.default_rng(cfg.seed + 1)
    test_idx = list(range(n_test))
    subsets = []
    for idx, n in ((train_idx, cfg.train_subset), (val_idx, cfg.val_subset), (test_idx, cfg.test_subset)):
        if n is not None and n < len(idx):
            idx = sorted(rng.choice(idx, size=n, replace=False).tolist())
        subsets.append(idx)
    return Splits(
        train=Subset(train_full, subsets[0]),
        val=Subset(train_eval, subsets[1]),
        test=Subset(test, subsets[2]),
        classes=classes,
    )
