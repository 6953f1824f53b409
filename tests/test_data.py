"""Datasets and splits, on tiny generated files (no real dataset needed)."""
from __future__ import annotations

import gzip
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from pydantic import ValidationError
from torch.utils.data.distributed import DistributedSampler

from ems_ray.data import (
    FMNIST_MEAN, FMNIST_STD, DataConfig, DataFormatError, DataNotFoundError, InMemoryImageDataset, build_splits,
    make_loader, read_idx,
)

N_TRAIN, N_TEST = 60, 20


def _idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    return header + array.astype(np.uint8).tobytes()


def write_fmnist(folder: Path, gz: bool = True, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (N_TRAIN, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": np.arange(N_TRAIN, dtype=np.uint8) % 10,
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (N_TEST, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": np.arange(N_TEST, dtype=np.uint8) % 10,
    }
    folder.mkdir(parents=True, exist_ok=True)
    for name, arr in arrays.items():
        data = _idx_bytes(arr)
        if gz:
            (folder / f"{name}.gz").write_bytes(gzip.compress(data))
        else:
            (folder / name).write_bytes(data)
    return arrays


@pytest.fixture()
def fmnist_root(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    return tmp_path, write_fmnist(tmp_path)


def _cfg(root: Path, **kw) -> DataConfig:
    return DataConfig(name="fashion-mnist", root=root, val_size=kw.pop("val_size", 10), **kw)


def test_read_idx_roundtrip_and_bad_magic(tmp_path: Path):
    arr = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    (tmp_path / "a.gz").write_bytes(gzip.compress(_idx_bytes(arr)))
    np.testing.assert_array_equal(read_idx(tmp_path / "a.gz"), arr)
    (tmp_path / "bad").write_bytes(b"\x01\x02\x03\x04rest")
    with pytest.raises(DataFormatError, match="magic"):
        read_idx(tmp_path / "bad")
    (tmp_path / "short").write_bytes(_idx_bytes(arr)[:-3])
    with pytest.raises(DataFormatError, match="truncated"):
        read_idx(tmp_path / "short")


def test_fmnist_splits_sizes_disjoint_and_normalised(fmnist_root):
    root, arrays = fmnist_root
    splits = build_splits(_cfg(root, augment=False))
    assert (len(splits.train), len(splits.val), len(splits.test)) == (N_TRAIN - 10, 10, N_TEST)
    assert splits.num_classes == 10
    assert not set(splits.train.indices) & set(splits.val.indices)
    x, y = splits.val[3]
    i = splits.val.indices[3]
    expected = (arrays["train-images-idx3-ubyte"][i] / 255.0 - FMNIST_MEAN[0]) / FMNIST_STD[0]
    assert x.shape == (1, 28, 28) and x.dtype == torch.float32
    np.testing.assert_allclose(x[0].numpy(), expected, atol=1e-5)
    assert y == arrays["train-labels-idx1-ubyte"][i]


def test_split_deterministic_by_seed(fmnist_root):
    root, _ = fmnist_root
    a, b = build_splits(_cfg(root, seed=3)), build_splits(_cfg(root, seed=3))
    c = build_splits(_cfg(root, seed=4))
    assert a.val.indices == b.val.indices and a.train.indices == b.train.indices
    assert a.val.indices != c.val.indices


def test_subsets(fmnist_root):
    root, _ = fmnist_root
    s = build_splits(_cfg(root, train_subset=7, val_subset=5, test_subset=3))
    assert (len(s.train), len(s.val), len(s.test)) == (7, 5, 3)
    full = build_splits(_cfg(root))
    assert set(s.train.indices) <= set(full.train.indices)


def test_torchvision_layout_uncompressed(tmp_path: Path):
    write_fmnist(tmp_path / "FashionMNIST" / "raw", gz=False)
    s = build_splits(_cfg(tmp_path))
    assert len(s.test) == N_TEST


def test_missing_fmnist_says_how_to_get_it(tmp_path: Path):
    with pytest.raises(DataNotFoundError, match="apt-get install dataset-fashion-mnist"):
        build_splits(_cfg(tmp_path))


def test_config_validation_names_field_and_allowed_values(tmp_path: Path):
    with pytest.raises(ValidationError) as err:
        DataConfig(name="mnist")
    text = str(err.value)
    assert "name" in text and "fashion-mnist" in text and "imagefolder" in text
    with pytest.raises(ValidationError, match="root"):
        DataConfig(name="imagefolder")
    with pytest.raises(ValidationError, match="image_size"):
        DataConfig(image_size=32)
    with pytest.raises(ValidationError, match="batch_size"):
        DataConfig(batch_size=0)
    with pytest.raises(ValidationError, match="bogus"):
        DataConfig(bogus=1)
    cfg = DataConfig()
    assert cfg.root == Path("/usr/share/datasets/fashion-mnist") and cfg.val_size == 5000


def test_val_size_must_leave_training_images(fmnist_root):
    root, _ = fmnist_root
    with pytest.raises(ValueError, match="val_size"):
        build_splits(_cfg(root, val_size=N_TRAIN))


def test_batched_augmentation_is_a_padded_crop_with_flip():
    torch.manual_seed(0)
    images = torch.randint(1, 256, (16, 1, 6, 6), dtype=torch.uint8)
    ds = InMemoryImageDataset(images, torch.zeros(16), mean=(0.0,), std=(1 / 255.0,), augment=True, pad=2)
    out, _ = ds.__getitems__(list(range(16)))
    assert out.shape == (16, 1, 6, 6)
    padded = torch.nn.functional.pad(images, (2, 2, 2, 2)).float()
    for n in range(16):
        candidates = [
            v for dy in range(5) for dx in range(5)
            for v in (padded[n, :, dy:dy + 6, dx:dx + 6], padded[n, :, dy:dy + 6, dx:dx + 6].flip(-1))
        ]
        assert any(torch.equal(out[n], c) for c in candidates)
    plain = ds.view(augment=False)
    assert torch.equal(plain.__getitems__([0]).images[0], images[0].float())


def test_make_loader_seeded_shuffle_and_distributed_sampler(fmnist_root):
    root, _ = fmnist_root
    s = build_splits(_cfg(root, augment=False))
    order = lambda seed: torch.cat([y for _, y in make_loader(s.train, 8, shuffle=True, seed=seed)])  # noqa: E731
    first = torch.cat([x.flatten(1) for x, _ in make_loader(s.train, 8, shuffle=True, seed=1)])
    again = torch.cat([x.flatten(1) for x, _ in make_loader(s.train, 8, shuffle=True, seed=1)])
    assert torch.equal(first, again) and len(order(1)) == len(s.train)
    halves = []
    for rank in (0, 1):
        sampler = DistributedSampler(s.train, num_replicas=2, rank=rank, shuffle=True, seed=0)
        loader = make_loader(s.train, 8, shuffle=True, sampler=sampler)
        xs = [x for x, _ in loader]
        assert xs[0].shape[1:] == (1, 28, 28)
        halves.append({tuple(r.tolist()) for r in torch.cat(xs).flatten(1)[:, :20]})
    assert not halves[0] & halves[1]
    x, y = next(iter(make_loader(s.val, 4)))
    assert x.shape == (4, 1, 28, 28) and y.dtype == torch.int64


def _write_cifar(root: Path) -> None:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        entry = {"data": rng.integers(0, 256, (4, 3072), dtype=np.uint8), "labels": list(range(4))}
        (folder / name).write_bytes(pickle.dumps(entry))
    meta = {"label_names": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta))


def test_cifar10_fake_pickles(tmp_path: Path, monkeypatch):
    import torchvision.datasets.cifar as tv_cifar

    _write_cifar(tmp_path)
    # The fake batches cannot match torchvision's MD5 sums of the real archive.
    monkeypatch.setattr(tv_cifar, "check_integrity", lambda *args, **kwargs: True)
    s = build_splits(DataConfig(name="cifar10", root=tmp_path, val_size=5))
    assert (len(s.train), len(s.val), len(s.test)) == (15, 5, 4)
    x, y = next(iter(make_loader(s.train, 6, shuffle=True)))
    assert x.shape == (6, 3, 32, 32) and s.classes[0] == "airplane"


def test_cifar10_missing(tmp_path: Path):
    with pytest.raises(DataNotFoundError, match="cifar-10-batches-py"):
        build_splits(DataConfig(name="cifar10", root=tmp_path))


def test_image_folder(tmp_path: Path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for part, n in (("train", 6), ("val", 2)):
        for cls in ("cat", "dog"):
            (tmp_path / part / cls).mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(tmp_path / part / cls / f"{i}.png")
    s = build_splits(DataConfig(name="imagefolder", root=tmp_path, val_size=4, image_size=16))
    assert (len(s.train), len(s.val), len(s.test)) == (8, 4, 4) and s.classes == ["cat", "dog"]
    x, y = next(iter(make_loader(s.train, 8, shuffle=True)))
    assert x.shape == (8, 3, 16, 16) and y.dtype == torch.int64
    xv, _ = s.val[0]
    assert xv.shape == (3, 16, 16)
    with pytest.raises(DataNotFoundError, match="class"):
        build_splits(DataConfig(name="imagefolder", root=tmp_path / "nothing"))


@pytest.mark.skipif(not Path("/usr/share/datasets/fashion-mnist").is_dir(), reason="dataset-fashion-mnist not installed")
def test_installed_fashion_mnist_defaults():
    s = build_splits(DataConfig(val_subset=100, test_subset=100))
    assert (len(s.train), len(s.val), len(s.test)) == (55000, 100, 100)
    x, _ = next(iter(make_loader(s.train, 256, shuffle=True)))
    assert abs(float(x.mean())) < 0.15 and 0.85 < float(x.std()) < 1.15
