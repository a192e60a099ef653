"""Image folders and arrays; synthetic data of any size."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from normia.data.images import ArrayImageDataModule, ImageFolderDataModule
from normia.data.synthetic import SyntheticDataModule, SyntheticDataset
from normia.errors import UserError


def write_images(root: Path, classes: dict[str, int], size: int = 6) -> None:
    rng = np.random.default_rng(0)
    for name, count in classes.items():
        (root / name).mkdir(parents=True)
        for i in range(count):
            pixels = rng.integers(0, 255, size=(size, size, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}.png")


def test_image_folder_classes_shapes_and_train_statistics(tmp_path: Path) -> None:
    write_images(tmp_path / "imgs", {"chat": 6, "chien": 4})
    dm = ImageFolderDataModule(root=str(tmp_path / "imgs"), val_fraction=0.2, batch_size=2)
    assert dm.classes == ["chat", "chien"]
    x, y = dm.train_set[:]
    assert x.shape == (8, 3, 6, 6) and set(y.tolist()) <= {0, 1}
    assert torch.allclose(x.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-5)  # standardised on the train split
    resized = ImageFolderDataModule(root=str(tmp_path / "imgs"), image_size=4, grayscale=True)
    assert resized.train_set[0][0].shape == (1, 4, 4)


def test_image_folder_bad_inputs(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="has no class sub-folders"):
        ImageFolderDataModule(root=str(tmp_path / "empty"))
    with pytest.raises(UserError, match="image folder not found"):
        ImageFolderDataModule(root=str(tmp_path / "missing"))
    (tmp_path / "one" / "cats").mkdir(parents=True)
    with pytest.raises(UserError, match="has no images"):
        ImageFolderDataModule(root=str(tmp_path / "one"))
    (tmp_path / "one" / "cats" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(UserError, match="cannot read the image"):
        ImageFolderDataModule(root=str(tmp_path / "one"))


def test_image_arrays(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    np.savez(tmp_path / "d.npz", images=rng.random((20, 8, 8)), labels=rng.integers(0, 3, 20))
    dm = ArrayImageDataModule(path=str(tmp_path / "d.npz"), batch_size=4)
    assert dm.train_set[0][0].shape == (1, 8, 8) and len(dm.train_set) == 16
    np.savez(tmp_path / "bad.npz", pictures=rng.random((2, 8, 8)))
    with pytest.raises(UserError, match=r"lacks the array\(s\) \['images', 'labels'\]"):
        ArrayImageDataModule(path=str(tmp_path / "bad.npz"))


def test_synthetic_data_is_deterministic_and_lazy() -> None:
    eager = SyntheticDataset(10, input_shape=[16], vocab_size=100, seed=3, in_memory=True)
    lazy = SyntheticDataset(10, input_shape=[16], vocab_size=100, seed=3, in_memory=False)
    for i in range(10):
        assert all(torch.equal(a, b) for a, b in zip(eager[i], lazy[i]))
    x, y = eager[0]
    assert torch.equal(x[1:], y[:-1])  # next-token targets
    huge = SyntheticDataset(10**12, input_shape=[4], num_classes=5, in_memory=False)
    assert len(huge) == 10**12 and huge[10**11][1].dtype == torch.int64
    dm = SyntheticDataModule(input_shape=[3, 8, 8], num_classes=10, num_samples=64, batch_size=16)
    dm.setup()
    xb, yb = next(iter(dm.train_dataloader()))
    assert xb.shape == (16, 3, 8, 8) and yb.shape == (16,)
    with pytest.raises(UserError, match="not both"):
        SyntheticDataModule(input_shape=[4], vocab_size=10, num_classes=3)
