"""The digest check on its own (no MLflow): which changes to a model folder it refuses, in one line naming the file."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from normia.errors import UserError
from normia.inference.artifact_digests import TAG, check_digests, decode, encode, file_digests


@pytest.fixture
def model(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    root = tmp_path / "model"
    (root / "data" / "normia_run").mkdir(parents=True)
    (root / "MLmodel").write_text("flavors: {}\n", encoding="utf-8")
    (root / "data" / "normia_run" / "config.yaml").write_text("model: {}\n", encoding="utf-8")
    return root, file_digests(root)


def test_an_unchanged_folder_passes_and_mlflow_meta_file_is_ignored(
    model: tuple[Path, dict[str, str]],
) -> None:
    root, digests = model
    assert sorted(digests) == ["MLmodel", "data/normia_run/config.yaml"]
    (root / "registered_model_meta").write_text("model_name: x\n", encoding="utf-8")
    check_digests(root, decode(encode(digests), "m"), "models:/x/1")


def test_changed_missing_and_added_files_are_refused_by_name(model: tuple[Path, dict[str, str]]) -> None:
    root, digests = model
    config = root / "data" / "normia_run" / "config.yaml"
    config.write_text("model: {_target_: os.system}\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"models:/x/1: the sha256 of data/normia_run/config\.yaml differs"):
        check_digests(root, digests, "models:/x/1")
    config.unlink()
    with pytest.raises(UserError, match=r"data/normia_run/config\.yaml is missing"):
        check_digests(root, digests, "models:/x/1")
    config.write_text("model: {}\n", encoding="utf-8")
    (root / "python_model.pkl").write_bytes(b"\x80\x04")
    with pytest.raises(UserError, match=r"python_model\.pkl was not there at export"):
        check_digests(root, digests, "models:/x/1")


@pytest.mark.parametrize("value", ["", "not json", "{}", '{"MLmodel": "abc"}', '["MLmodel"]'])
def test_a_malformed_tag_is_refused(value: str) -> None:
    with pytest.raises(UserError, match=re.escape(f"its tag {TAG} is not a JSON map")):
        decode(value, "models:/x/1")
