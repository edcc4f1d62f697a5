"""Data modules: the embedded synthetic set, the real ImageNet / ImageNet-S sets and a folder of your own photos."""
from .base import HarmonyDataModule
from .collate import collate_skip_none
from .image_folder import ImageFolderDataModule
from .image_files import ImageFiles
from .imagenet import DataLayoutError, ImageNetDataModule
from .imagenet_s import ImageNetSDataModule, SegmentedImageFiles
from .synthetic import CLASS_NAMES, SyntheticShapes
from .synthetic_datamodule import SyntheticDataModule
from .transforms import IMAGENET_MEAN, IMAGENET_STD, IMAGENET_TRANSFORM, InputTransform, denormalize, normalize

__all__ = [
    "CLASS_NAMES", "DataLayoutError", "HarmonyDataModule", "IMAGENET_MEAN", "IMAGENET_STD", "ImageFiles", "ImageFolderDataModule",
    "ImageNetDataModule", "IMAGENET_TRANSFORM", "InputTransform", "ImageNetSDataModule", "SegmentedImageFiles", "SyntheticDataModule",
    "SyntheticShapes", "collate_skip_none", "denormalize", "normalize",
]
