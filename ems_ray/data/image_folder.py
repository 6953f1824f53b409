"""ImageFolder datasets (`<root>/train/<class>/*`, `<root>/val/<class>/*`), decoded per item.

Too large to hold in memory (ImageNet), so these use the standard PIL transforms: random
resized crop + flip for training, resize to size/0.875 then centre crop for evaluation.
"""
from __future__ import annotations

import copy
from pathlib import Path

from torch.utils.data import Dataset

from .config import DataNotFoundError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _transforms(size: int, augment: bool):
    from torchvision import transforms as T

    tail = [T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    if augment:
        return T.Compose([T.RandomResizedCrop(size), T.RandomHorizontalFlip(), *tail])
    return T.Compose([T.Resize(int(round(size / 0.875))), T.CenterCrop(size), *tail])


def load_image_folder(root: str | Path, size: int) -> tuple[Dataset, Dataset, Dataset]:
    """(train with augmentation, train without, test) over the same scanned file lists.

    The `val/` folder is the test split (as with ImageNet, whose labelled val set is where
    results are reported); validation for search is carved from `train/` by `build_splits`.
    """
    from torchvision.datasets import ImageFolder

    root = Path(root)
    datasets = []
    for part in ("train", "val"):
        folder = root / part
        try:
            datasets.append(ImageFolder(str(folder), transform=_transforms(size, augment=False)))
        except FileNotFoundError as err:
            raise DataNotFoundError(
                f"ImageFolder data not found: {folder} must hold one sub-folder of images per class "
                f"(layout <root>/train/<class>/*.png|jpg and <root>/val/<class>/...). {err}"
            ) from err
    train_eval, test = datasets
    if train_eval.classes != test.classes:
        raise DataNotFoundError(f"{root}: train/ and val/ have different class folders")
    train_aug = copy.copy(train_eval)
    train_aug.transform = _transforms(size, augment=True)
    return train_aug, train_eval, test
