"""Datasets: Fashion-MNIST (default, in memory), CIFAR-10, ImageFolder; splits and loaders."""
from .cifar import CIFAR10_MEAN, CIFAR10_STD, load_cifar10
from .config import DataConfig, DataFormatError, DataNotFoundError
from .fashion_mnist import FMNIST_CLASSES, FMNIST_MEAN, FMNIST_STD, find_fashion_mnist, load_fashion_mnist, read_idx
from .image_folder import IMAGENET_MEAN, IMAGENET_STD, load_image_folder
from .loaders import make_loader
from .splits import Splits, build_splits, split_indices
from .tensor_dataset import ImageBatch, InMemoryImageDataset, collate_images

__all__ = [
    "CIFAR10_MEAN", "CIFAR10_STD", "DataConfig", "DataFormatError", "DataNotFoundError",
    "FMNIST_CLASSES", "FMNIST_MEAN", "FMNIST_STD", "IMAGENET_MEAN", "IMAGENET_STD", "ImageBatch",
    "InMemoryImageDataset", "Splits", "build_splits", "collate_images", "find_fashion_mnist",
    "load_cifar10", "load_fashion_mnist", "load_image_folder", "make_loader", "read_idx",
    "split_indices",
]
