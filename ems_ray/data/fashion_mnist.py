"""Fashion-MNIST read straight from the original idx files (gzip or not) into uint8 tensors.

Two layouts are accepted: the files directly in `root` (Debian's `dataset-fashion-mnist` puts
them in /usr/share/datasets/fashion-mnist) and torchvision's `<root>/FashionMNIST/raw/`.
"""
from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np
import torch

from .config import DataFormatError, DataNotFoundError

FMNIST_MEAN = (0.2860,)
FMNIST_STD = (0.3530,)
FMNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
FMNIST_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
_IDX_DTYPE_UBYTE = 0x08


def read_idx(path: str | Path) -> np.ndarray:
    """An idx file (optionally gzipped) as a uint8 array of its declared shape."""
    path = Path(path)
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (EOFError, OSError, zlib.error) as exc:  # truncated, damaged or not gzip at all
        raise DataFormatError(f"{path}: cannot be read ({exc}); the file is truncated or damaged, "
                              "replace it with the original") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != _IDX_DTYPE_UBYTE:
        raise DataFormatError(f"{path}: not an unsigned-byte idx file (bad magic number)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    shape = tuple(int(d) for d in np.frombuffer(raw[4:header], dtype=">u4"))
    expected = header + int(np.prod(shape))
    if len(raw) != expected:
        raise DataFormatError(f"{path}: {len(raw)} bytes, the header {shape} needs {expected} (truncated file?)")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def _find(root: Path, stem: str) -> Path | None:
    for folder in (root, root / "FashionMNIST" / "raw"):
        for name in (stem + ".gz", stem):
            if (folder / name).is_file():
                return folder / name
    return None


def find_fashion_mnist(root: str | Path) -> dict[str, Path]:
    """Paths of the four idx files, or a `DataNotFoundError` that says how to get them."""
    root = Path(root)
    found = {key: _find(root, stem) for key, stem in FMNIST_FILES.items()}
    missing = [FMNIST_FILES[k] for k, p in found.items() if p is None]
    if missing:
        raise DataNotFoundError(
            f"Fashion-MNIST not found under {root}: missing {', '.join(m + '[.gz]' for m in missing)}.\n"
            "Get it with `apt-get update && apt-get install dataset-fashion-mnist` (files land in "
            "/usr/share/datasets/fashion-mnist, the default root), or place the four original "
            "*-idx?-ubyte[.gz] files in <root>/ or <root>/FashionMNIST/raw/ (torchvision's layout; "
            "torchvision.datasets.FashionMNIST(root, download=True) writes it where the internet is reachable)."
        )
    return found  # type: ignore[return-value]


def load_fashion_mnist(root: str | Path) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(train_images, train_labels, test_images, test_labels); images uint8 (N, 1, 28, 28)."""
    paths = find_fashion_mnist(root)
    arrays = {k: read_idx(p) for k, p in paths.items()}
    for split in ("train", "test"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise DataFormatError(
                f"Fashion-MNIST {split}: images {images.shape} and labels {labels.shape} do not match"
            )
    # frombuffer arrays are read-only; copy once into tensors we own.
    tensors = [torch.from_numpy(arrays[k].copy()) for k in ("train_images", "train_labels", "test_images", "test_labels")]
    tr_x, tr_y, te_x, te_y = tensors
    return tr_x.unsqueeze(1), tr_y.long(), te_x.unsqueeze(1), te_y.long()
