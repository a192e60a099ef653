"""Issue 26 F: a recorded config is parsed with bounded work. Nested YAML aliases (a few hundred bytes that expand
into billions of values) and texts larger than any config normia writes are refused before they are loaded, for
every reader: load_untrusted_yaml (eval, predict, load_run, the exported model), with or without --trust, and a
run's overrides.yaml (reproduce: tests/security/test_reproduce_composition.py)."""

from __future__ import annotations

import signal
from collections.abc import Iterator

import pytest

from normia.config.record_yaml import MAX_RECORDED_CHARS, check_recorded_text
from normia.config.trust import load_untrusted_yaml
from normia.errors import UserError


def bomb(levels: int, width: int = 10) -> str:
    """width**levels values once expanded, in about 40 * width * levels characters."""
    lines = ["l0: &l0 [" + ", ".join(["x"] * width) + "]"]
    for i in range(1, levels):
        lines.append(f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * width) + "]")
    return "model:\n  _target_: normia.models.mlp.MLPClassifier\n" + "\n".join(lines) + "\n"


@pytest.fixture
def deadline() -> Iterator[None]:
    """Fails the test after 10 s instead of letting an expansion run for hours."""

    def _too_slow(*_):
        raise TimeoutError("the aliases were expanded")

    previous = signal.signal(signal.SIGALRM, _too_slow)
    signal.alarm(10)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


@pytest.mark.parametrize("trust", [False, True])
@pytest.mark.parametrize("levels", [2, 9])
def test_nested_aliases_are_refused_at_once(levels: int, trust: bool, deadline: None) -> None:
    with pytest.raises(UserError, match="uses YAML anchors or aliases"):
        load_untrusted_yaml(bomb(levels), "run abc config.yaml", trust=trust)


def test_a_merge_key_is_an_alias_too() -> None:
    text = "base: &b {lr: 1}\noptim:\n  <<: *b\n"
    with pytest.raises(UserError, match="anchors or aliases"):
        load_untrusted_yaml(text, "recorded")


def test_a_text_larger_than_any_config_is_refused_before_it_is_parsed() -> None:
    text = "tags:\n  note: " + "x" * MAX_RECORDED_CHARS + "\n"
    with pytest.raises(UserError, match="more than any config normia writes"):
        load_untrusted_yaml(text, "the config inside last.ckpt")


def test_a_config_normia_wrote_passes(tmp_path) -> None:
    from omegaconf import OmegaConf

    from normia.config.compose import compose_job
    from normia.config.secrets import redact

    text = OmegaConf.to_yaml(redact(compose_job(["experiment=quickstart"])))
    check_recorded_text(text, "config.yaml")
    assert load_untrusted_yaml(text, "config.yaml").name == "quickstart"
