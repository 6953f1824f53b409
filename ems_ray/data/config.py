"""The data config (which dataset, where, how to split and batch) and the data errors."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, NonNegativeInt, PositiveInt, model_validator

from ems_ray.errors import InputError

DatasetName = Literal["fashion-mnist", "cifar10", "imagefolder"]

DEFAULT_ROOTS: dict[str, Path | None] = {
    "fashion-mnist": Path("/usr/share/datasets/fashion-mnist"),
    "cifar10": Path("data/cifar10"),
    "imagefolder": None,
}
DEFAULT_VAL_SIZES = {"fashion-mnist": 5000, "cifar10": 5000, "imagefolder": 10000}


class DataNotFoundError(InputError, FileNotFoundError):
    """The dataset's files are not where the config says; the message says how to get them."""


class DataFormatError(InputError):
    """A dataset file exists but is not in the expected format (truncated or wrong file)."""


class DataConfig(BaseModel):
    """Which dataset to read, where from, how to carve validation from training, how to batch.

    `val_size` images are taken out of the training set by a permutation seeded with `seed`, so
    every process and every run sees the same split; the test split is only for final reports.
    `*_subset` keep only the first n images of a split (quick configs, tests).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: DatasetName = "fashion-mnist"
    root: Path | None = None
    val_size: PositiveInt | None = None
    batch_size: PositiveInt = 128
    eval_batch_size: PositiveInt = 500
    num_workers: NonNegativeInt = 0
    seed: int = 0
    augment: bool = True
    train_subset: PositiveInt | None = None
    val_subset: PositiveInt | None = None
    test_subset: PositiveInt | None = None
    image_size: PositiveInt | None = None

    @model_validator(mode="before")
    @classmethod
    def _defaults(cls, data: Any) -> Any:
        """Fill `root` and `val_size` from the dataset's defaults when they are not given."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        name = data.get("name", "fashion-mnist")
        if data.get("root") is None and DEFAULT_ROOTS.get(name) is not None:
            data["root"] = DEFAULT_ROOTS[name]
        if data.get("val_size") is None and name in DEFAULT_VAL_SIZES:
            data["val_size"] = DEFAULT_VAL_SIZES[name]
        return data

    @model_validator(mode="after")
    def _check(self) -> DataConfig:
        if self.root is None:
            raise InputError(f"root: required for name='{self.name}' (the folder holding train/ and val/)")
        native = {"fashion-mnist": 28}.get(self.name)
        if native is not None and self.image_size not in (None, native):
            raise InputError(f"image_size: {self.image_size} not supported for {self.name}; allowed values: [None, {native}]")
        return self
