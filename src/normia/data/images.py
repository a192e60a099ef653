"""Image classification data: a folder per class, a flat folder with a label table, or arrays in a .npz file, as
(N, C, H, W) float tensors in memory.

A label table is how partners often hand images over: a CSV beside a flat folder, one row per image naming its file
and its class (`fichier;etiquette` by default; the separator is detected). It trains as it is, without a conversion
script. Class names are sorted; their index is their position in `classes`, which every checkpoint records (see
predict_state) so that predictions say "classe_huit", not "2".

Both are split by a seeded shuffle (data.seed) and standardised per channel with the training images' mean and std.
In-memory on purpose: the datasets a PoC uses here are small; large image sets belong in a streaming format.
"""

from __future__ import annotations

from pathlib import Path
from typing import IO

import numpy as np
import torch
from torch.utils.data import TensorDataset

from normia.data.datamodule import ResumableDataModule
from normia.data.facts import RecordsPredictState, plain, share_with_model, with_predict_state
from normia.data.splits import Standardizer, check_fraction, shuffled_split
from normia.errors import UserError
from normia.text_limits import shown

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


def read_image(path: Path | IO[bytes], image_size: int | None, grayscale: bool) -> np.ndarray:
    """One image file as a float32 (C, H, W) array in [0, 1], resized to image_size x image_size when given.

    Raises UserError for a file that is not a readable image."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img = img.convert("L" if grayscale else "RGB")
            if image_size:
                img = img.resize((image_size, image_size), Image.BILINEAR)
            array = np.asarray(img, dtype=np.float32) / 255.0
    except (UnidentifiedImageError, OSError) as err:
        raise UserError(f"cannot read the image {path}: {err}") from None
    return array[None] if grayscale else array.transpose(2, 0, 1)


def stack_same_size(images: list[np.ndarray], where: Path) -> np.ndarray:
    """(N, C, H, W) from N (C, H, W) arrays; UserError when their sizes differ."""
    shapes = {a.shape for a in images}
    if len(shapes) > 1:
        raise UserError(
            f"the images under {where} have different sizes {sorted(shapes)[:3]}: set data.image_size"
        )
    return np.stack(images)


def load_image_table(
    path: str | Path,
    root: str | Path | None = None,
    file_column: str = "fichier",
    label_column: str = "etiquette",
    image_size: int | None = None,
    grayscale: bool = False,
    sep: str | None = None,
    encoding: str = "utf-8-sig",
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(images (N, C, H, W) in [0, 1], labels (N,), sorted class names) from a label table (one row per image:
    its file name, relative to `root` (default: the table's folder), and its class name).

    Raises UserError for a missing table, folder, column, empty cell or image file (naming the row)."""
    from normia.data.table_reader import read_table, require_columns

    table = Path(path).expanduser()
    frame = read_table(table, sep=sep, encoding=encoding)
    require_columns(frame, [file_column, label_column], table, "file_column/label_column")
    base = Path(root).expanduser() if root else table.parent
    if not base.is_dir():
        raise UserError(f"image folder not found: {base} (fix data.root)")
    files, names = frame[file_column], frame[label_column]
    for column, cells in ((file_column, files), (label_column, names)):
        empty = cells.isna().to_numpy()
        if empty.any():
            row = int(np.flatnonzero(empty)[0])
            raise UserError(f"empty cell in column '{column}' of {table} at data row {row + 1}: fill it")
    labels_text = [_label_text(v) for v in names]
    classes = sorted(set(labels_text))
    if len(classes) < 2:
        raise UserError(
            f"column '{label_column}' of {table} names {len(classes)} class(es): a classifier needs 2+"
        )
    lookup = {c: i for i, c in enumerate(classes)}
    images = []
    for row, name in enumerate(files.astype(str)):
        image = base / name.strip()
        if not image.is_file():
            raise UserError(
                f"image {shown(name)} (data row {row + 1} of {table}) not found in {base}: fix the name or data.root"
            )
        images.append(read_image(image, image_size, grayscale))
    labels = np.asarray([lookup[v] for v in labels_text], dtype=np.int64)
    return stack_same_size(images, base), labels, classes


def _label_text(value: object) -> str:
    """A class name as text; a label read as a number keeps its digits (7, not 7.0)."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def load_image_folder(
    root: str | Path, image_size: int | None = None, grayscale: bool = False
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(images (N, C, H, W) in [0, 1], labels (N,), class names) from root/<class>/<image files>."""
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
            images.append(read_image(f, image_size, grayscale))
            labels.append(label)
    return stack_same_size(images, base), np.asarray(labels, dtype=np.int64), classes


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


class _ImageDataModule(RecordsPredictState, ResumableDataModule):
    """After setup: `classes` (names in index order), `scaler` (per-channel mean/std of the training images),
    `image_shape` (C, H, W) and `majority_class` (the training split's most frequent class index)."""

    _defer_setup = False  # for_prediction: the options only, no training images read
    image_size: int | None = None
    grayscale: bool = False

    def __init__(self, val_fraction: float, batch_size: int, num_workers: int, seed: int) -> None:
        super().__init__(batch_size=batch_size, num_workers=num_workers, seed=seed)
        self.val_fraction = check_fraction("val_fraction", val_fraction)
        self.scaler: Standardizer | None = None
        self.classes: list[str] = []
        self.image_shape: tuple[int, ...] = ()
        self.majority_class: int | None = None

    @classmethod
    def for_prediction(cls, **options: object) -> _ImageDataModule:
        """The options of a trained run's data config without reading its training images."""
        module = cls.__new__(cls)
        module._defer_setup = True
        module.__init__(**options)  # type: ignore[misc]
        return module

    def load(self) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is None:
            self._split()
        share_with_model(self, majority_class=self.majority_class)

    def predict_state(self) -> dict[str, object] | None:
        """What normia predict needs: class names (index order), per-channel mean and std, the image shape and how
        files are read (image_size, grayscale). None before setup."""
        if self.scaler is None:
            return None
        return {
            "kind": "classify",
            "input": "images",
            "classes": list(self.classes),
            "mean": plain(self.scaler.mean),
            "std": plain(self.scaler.std),
            "image_shape": [int(v) for v in self.image_shape],
            "image_size": self.image_size,
            "grayscale": bool(self.grayscale),
        }

    def state_dict(self) -> dict[str, object]:
        """The loader position (resume) and the prediction state, both saved in every checkpoint by Lightning."""
        return with_predict_state(super().state_dict(), self.predict_state())

    def _split(self) -> None:
        x, y = self.load()
        train_idx, val_idx = shuffled_split(len(x), self.val_fraction, self.seed, what="images")
        self.image_shape = tuple(x.shape[1:])
        self.majority_class = int(np.bincount(y[train_idx]).argmax())
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
        if not self._defer_setup:
            self.setup()  # load and check now: a bad input fails at construction, before any run is recorded

    def load(self) -> tuple[np.ndarray, np.ndarray]:
        x, y, self.classes = load_image_folder(self.root, self.image_size, self.grayscale)
        return x, y


class ImageTableDataModule(_ImageDataModule):
    """A flat folder of images and a label table beside it (`fichier;etiquette`): see load_image_table."""

    def __init__(
        self,
        path: str,
        root: str | None = None,
        file_column: str = "fichier",
        label_column: str = "etiquette",
        image_size: int | None = None,
        grayscale: bool = False,
        val_fraction: float = 0.2,
        batch_size: int = 64,
        num_workers: int = 0,
        seed: int = 0,
        sep: str | None = None,
        encoding: str = "utf-8-sig",
    ) -> None:
        super().__init__(val_fraction, batch_size, num_workers, seed)
        self.path, self.root = path, root
        self.file_column, self.label_column = file_column, label_column
        self.image_size, self.grayscale = image_size, grayscale
        self.sep, self.encoding = sep, encoding
        if not self._defer_setup:
            self.setup()  # load and check now: a bad input fails at construction, before any run is recorded

    def load(self) -> tuple[np.ndarray, np.ndarray]:
        x, y, self.classes = load_image_table(
            self.path,
            self.root,
            self.file_column,
            self.label_column,
            self.image_size,
            self.grayscale,
            self.sep,
            self.encoding,
        )
        return x, y

    def predict_state(self) -> dict[str, object] | None:
        state = super().predict_state()
        if state is not None:
            state["file_column"] = self.file_column
        return state


class ArrayImageDataModule(_ImageDataModule):
    """Images and labels from a .npz file (np.savez(path, images=..., labels=...))."""

    def __init__(
        self, path: str, val_fraction: float = 0.2, batch_size: int = 64, num_workers: int = 0, seed: int = 0
    ) -> None:
        super().__init__(val_fraction, batch_size, num_workers, seed)
        self.path = path
        if not self._defer_setup:
            self.setup()  # load and check now: a bad input fails at construction, before any run is recorded

    def predict_state(self) -> dict[str, object] | None:
        """None: arrays of any scale have no file format to read new images from, so normia predict refuses them."""
        return None

    def load(self) -> tuple[np.ndarray, np.ndarray]:
        x, y = load_image_arrays(self.path)
        self.classes = [str(c) for c in sorted(set(y.tolist()))]
        return x, y
