"""Datasets: Fashion-MNIST (default, in memory), CIFAR-10, ImageFolder; splits and loaders."""
from ems_ray._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    ".cifar": ("CIFAR10_MEAN", "CIFAR10_STD", "load_cifar10"),
    ".config": ("DataConfig", "DataFormatError", "DataNotFoundError"),
    ".fashion_mnist": (
        "FMNIST_CLASSES", "FMNIST_MEAN", "FMNIST_STD", "find_fashion_mnist", "load_fashion_mnist", "read_idx",
    ),
    ".image_folder": ("IMAGENET_MEAN", "IMAGENET_STD", "load_image_folder"),
    ".loaders": ("make_loader",),
    ".splits": ("NORMALIZATION", "Splits", "build_splits", "normalization", "split_indices"),
    ".tensor_dataset": ("ImageBatch", "InMemoryImageDataset", "collate_images"),
})
