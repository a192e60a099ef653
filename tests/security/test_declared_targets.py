"""Issue 26 A: the allow-list names objects, not prefixes.

A `_target_` under `normia.` reached any module through attribute access (`normia.training.checkpoint.torch.load`
with weights_only: false unpickled an attacker's file), and a normia function with side effects could be called by a
config. Now a normia name must be a declared buildable class (config/buildable.py), and a name under a user's prefix
must resolve to a class or function defined under that prefix (config/resolved_targets.py). A canary file stands for
"code ran".
"""

from __future__ import annotations

import inspect
import re
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from normia.config.buildable import BUILDABLE
from normia.config.trust import ALLOWED_TARGETS, check_targets, trusted_prefixes
from normia.errors import UserError

REPO = Path(__file__).resolve().parents[2]
CONFIG_ROOTS = [REPO / "configs", REPO / "src/normia/configs", REPO / "src/normia/project/templates"]
TARGET_LINE = re.compile(r"^\s*_target_:\s*['\"]?([^'\"\s#]+)", re.MULTILINE)


def _config_targets() -> list[tuple[Path, str]]:
    found = []
    for root in CONFIG_ROOTS:
        for path in sorted(root.rglob("*.yaml")):
            found += [(path, t) for t in TARGET_LINE.findall(path.read_text(encoding="utf-8"))]
    return found


def test_every_declared_name_is_the_canonical_path_of_a_class() -> None:
    import importlib

    for name in sorted(BUILDABLE):
        module_name, _, attr = name.rpartition(".")
        obj = getattr(importlib.import_module(module_name), attr)
        assert inspect.isclass(obj), name
        assert f"{obj.__module__}.{obj.__qualname__}" == name, name


def test_every_target_in_normias_configs_and_templates_is_declared_or_listed() -> None:
    found = _config_targets()
    assert len(found) > 20
    for path, target in found:
        if target.startswith("{{pkg}}."):  # a project template names its own package (a user prefix)
            continue
        assert target in BUILDABLE or target in ALLOWED_TARGETS, f"{path}: {target} is not declared"


@pytest.mark.parametrize(
    "target",
    [
        "normia.training.checkpoint.torch.load",  # the exploit: torch.load through a normia module
        "normia.training.atomic_text.write_text_atomic",  # a normia function with a side effect (writes a file)
        "normia.config.trust.os.system",
        "normia.models.mlp.nn.Module",
        "normia.models.mlp",  # a module is not a class
        "normia",
    ],
)
def test_a_normia_name_that_is_not_a_declared_class_is_refused_by_its_text(target: str) -> None:
    cfg = OmegaConf.create(
        {"model": {"_target_": "normia.models.mlp.MLPClassifier", "dropout": {"_target_": target}}}
    )
    with pytest.raises(
        UserError, match=rf"model\.dropout\._target_='{re.escape(target)}' is not one of normia"
    ):
        check_targets(cfg, "recorded", trusted_prefixes())


def test_a_user_prefix_cannot_reopen_normias_namespace(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NORMIA_TRUSTED_TARGETS", "normia.,normia.training.")
    cfg = OmegaConf.create({"m": {"_target_": "normia.training.checkpoint.torch.load"}})
    with pytest.raises(UserError, match="not one of normia's buildable classes"):
        check_targets(cfg, "own", trusted_prefixes())


@pytest.fixture
def my_study(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A researcher's package `my_study` on sys.path, trusted as `my_study.`: a class, a factory, and names that
    reach other modules through its imports."""
    package = tmp_path / "pkgs" / "my_study"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "models.py").write_text(
        "import json\nimport shutil\nfrom shutil import copyfile\n\n"
        "class Net:\n    def __init__(self, width=1):\n        self.width = width\n\n"
        "def make_net(width=2):\n    return Net(width)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path / "pkgs"))
    monkeypatch.setenv("NORMIA_TRUSTED_TARGETS", "my_study.")
    yield tmp_path
    for name in [n for n in sys.modules if n == "my_study" or n.startswith("my_study.")]:
        del sys.modules[name]


def test_a_users_own_class_and_factory_are_built(my_study: Path) -> None:
    from normia.training.build import instantiate_node

    net = instantiate_node(OmegaConf.create({"_target_": "my_study.models.Net", "width": 3}), "model")
    assert net.width == 3
    made = instantiate_node(OmegaConf.create({"_target_": "my_study.models.make_net"}), "model")
    assert made.width == 2


@pytest.mark.parametrize(
    "target",
    ["my_study.models.shutil.copyfile", "my_study.models.copyfile", "my_study.models.json.loads"],
)
def test_a_name_under_a_user_prefix_that_resolves_outside_it_is_not_built(
    my_study: Path, target: str
) -> None:
    """`my_study.` vouches for the researcher's classes, not for what their modules import (shutil.copyfile
    would copy the canary into place)."""
    from normia.training.build import instantiate_node

    source, canary = my_study / "source", my_study / "canary"
    source.write_text("x")
    node = OmegaConf.create({"_target_": target, "src": str(source), "dst": str(canary), "s": "{}"})
    if target.endswith("loads"):
        node = OmegaConf.create({"_target_": target, "s": "{}"})
    with pytest.raises(UserError, match=rf"model\._target_='{re.escape(target)}' resolves to"):
        instantiate_node(node, "model")
    assert not canary.exists()


def test_a_nested_target_is_checked_when_built_even_if_the_text_check_was_skipped(tmp_path: Path) -> None:
    """instantiate_node is the last gate: a node assembled after the text check (a filled value, a merge) is
    checked again, at every depth, before Hydra calls anything."""
    from normia.training.build import instantiate_node

    canary = tmp_path / "canary"
    node = OmegaConf.create(
        {
            "_target_": "normia.models.mlp.MLPClassifier",
            "dropout": {
                "_target_": "normia.training.atomic_text.write_text_atomic",
                "path": str(canary),
                "text": "pwned",
            },
        }
    )
    with pytest.raises(UserError, match=r"model: dropout\._target_='normia\.training\.atomic_text"):
        instantiate_node(node, "model")
    assert not canary.exists()


def test_train_refuses_a_normia_function_as_a_nested_target_before_anything_is_written(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from normia.cli import main

    canary = workdir / "canary"
    extra = (
        f"+model.extra={{_target_: normia.training.atomic_text.write_text_atomic, path: {canary}, text: x}}"
    )
    code = main(["train", "experiment=quickstart", extra, "--dry-run"])
    err = capsys.readouterr().err
    assert code == 2 and not canary.exists() and not (workdir / "outputs").exists(), err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert (
        "model.extra._target_='normia.training.atomic_text.write_text_atomic' is not one of normia"
        in lines[0]
    )
