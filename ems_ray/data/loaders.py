"""DataLoaders for the splits; a sampler (e.g. `DistributedSampler`) can replace shuffling."""
from __future__ import annotations

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from .tensor_dataset import collate_images


def make_loader(
    dataset: Dataset,
    batch_size: int,
    shuffle: bool = False,
    seed: int = 0,
    sampler: Sampler | None = None,
    num_workers: int = 0,
    drop_last: bool = False,
    pin_memory: bool = False,
) -> DataLoader:
    """A loader whose shuffling order depends only on `seed` (and the epoch's sampler state).

    With a `sampler`, `shuffle` is ignored: the sampler decides order and sharding (call its
    `set_epoch` each epoch). Batches are (images float32 NCHW, labels int64).
    """
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle if sampler is None else False,
        sampler=sampler,
        num_workers=num_workers,
        collate_fn=collate_images,
        drop_last=drop_last,
        pin_memory=pin_memory,
        generator=generator,
        persistent_workers=num_workers > 0,
    )
