"""Image classification data: a folder per class, or arrays in a .npz file, as (N, C, H, W) float tensors in memory.

Both are split by a seeded shuffle (data.seed) and standardised per channel with the training images' mean and std.
In-memory on purpose: the datasets a PoC uses here are small; large image sets belong in a streaming format.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import TensorDataset

from normia.data.datamodule import ResumableDataModule
from normia.data.splits import Standardizer, check_fraction, shuffled_split
from normia.errors import UserError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


def load_image_folder(
    root: str | Path, image_size: int | None = None, grayscale: bool = False
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(images (N, C, H, W) in [0, 1], labels (N,), class names) from root/<class>/<image files>."""
    from PIL import Image, UnidentifiedImageError

    base = Path(root).expanduser()
    if not base.is_dir():
        raise UserError(f"image folder not found: {base} (fix data.root)")
    classes = sorted(d.name for d in base.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not classes:
        raise UserError(
            f"the image folder {base} has no class sub-folders: put images in {base}/<class name>/"
        )
    images, labels = [], []
    for label, name in enumerate(classes):
        files = sorted(f for f in (base / name).iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise UserError(
                f"the class folder {base / name} has no images ({', '.join(IMAGE_SUFFIXES)}): add some"
            )
        for f in files:
            try:
                with Image.open(f) as img:
                    img = img.convert("L" if grayscale else "RGB")
                    if image_size:
                        img = img.resize((image_size, image_size), Image.BILINEAR)
                    array = np.asarray(img, dtype=np.float32) / 255.0
            except (UnidentifiedImageError, OSError) as err:
                raise UserError(f"cannot read the image {f}: {err}") from None
            images.append(array[None] if grayscale else array.transpose(2, 0, 1))
            labels.append(label)
    shapes = {a.shape for a in images}
    if len(shapes) > 1:
        raise UserError(
            f"the images under {base} have different sizes {sorted(shapes)[:3]}: set data.image_size"
        )
    return np.stack(images), np.asarray(labels, dtype=np.int64), classes


def load_image_arrays(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(images (N, C, H, W), labels (N,)) from a .npz holding 'images' ((N, H, W) or (N, C, H, W)) and 'labels'."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise UserError(f"image array file not found: {p} (fix data.path)")
    with np.load(p, allow_pickle=False) as data:
        missing = [k for k in ("images", "labels") if k not in data.files]
        if missing:
            raise UserError(
                f"{p} lacks the array(s) {missing}; it has {data.files}: save images= and labels="
            )
        images, labels = data["images"].astype(np.float32), data["labels"].astype(np.int64)
    if images.ndim == 3:
        images = images[:, None]
    if images.ndim != 4 or len(images) != len(labels):
        raise UserError(
            f"{p}: images {images.shape} and labels {labels.shape} must be (N, [C,] H, W) and (N,)"
        )
    return images, labels


class _ImageDataModule(ResumableDataModule):
    def __init__(self, val_fraction: float, batch_size: int, num_workers: int, seed: int) -> None:
        super().__init__(batch_size=batch_size, num_workers=num_workers, seed=seed)
        self.val_fraction = check_fraction("val_fraction", val_fraction)
        self.scaler: Standardizer | None = None
        self.classes: list[str] = []

    def load(self) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        x, y = self.load()
        train_idx, val_idx = shuffled_split(len(x), self.val_fraction, self.seed, what="images")
        self.scaler = Standardizer.fit(x[train_idx], axis=(0, 2, 3))
        xt = torch.from_numpy(self.scaler.transform(x))
        yt = torch.from_numpy(y)
        self.train_set = TensorDataset(xt[train_idx], yt[train_idx])
        self.val_set = TensorDataset(xt[val_idx], yt[val_idx])


class ImageFolderDataModule(_ImageDataModule):
    """root/<class>/<image>: the class names are the sorted sub-folder names."""

    def __init__(
        self,
        root: str,
        image_size: int | None = None,
        grayscale: bool = False,
        val_fraction: float = 0.2,
        batch_size: int = 64,
        num_workers: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__(val_fraction, batch_size, num_workers, seed)
        self.root, self.image_size, self.grayscale = root, image_size, grayscale
        self.setup()  # load and check now: a bad input fails at construction, before any run is recorded

    def load(self) -> tuple[np.ndarray, np.ndarray]:
        x, y, self.classes = load_image_folder(self.root, self.image_size, self.grayscale)
        return x, y


class ArrayImageDataModule(_ImageDataModule):
    """Images and labels from a .npz file (np.savez(path, images=..., labels=...))."""

    def __init__(
        self, path: str, val_fraction: float = 0.2, batch_size: int = 64, num_workers: int = 0, seed: int = 0
    ) -> None:
        super().__init__(val_fraction, batch_size, num_workers, seed)
        self.path = path
        self.setup()  # load and check now: a bad input fails at construction, before any run is recorded

    def load(self) -> tuple[np.ndarray, np.ndarray]:
        x, y = load_image_arrays(self.path)
        self.classes = [str(c) for c in sorted(set(y.tolist()))]
        return x, y
