"""The launcher's checks that need no cluster: time limits, sinfo parsing, typed launcher keys, trainer fitting,
preset limits, and the sbatch script a dry run shows. Fast; they run everywhere."""

from __future__ import annotations

import os
import sys

import pytest
from omegaconf import OmegaConf

from normia.errors import UserError
from normia.launch.checks import check_request
from normia.launch.cluster_info import gpus_in_gres, parse_sinfo
from normia.launch.python_env import read_version_file, runs_this_python
from normia.launch.rendezvous import check_master_resolves
from normia.launch.sbatch import executor_params, render_script
from normia.launch.spec import parse_launcher
from normia.launch.timelimit import format_seconds, time_limit_seconds
from normia.launch.trainer_fit import fit_trainer

AUSTRAL_LIKE = {
    "name": "austral",
    "partition": "gpu_h200",
    "gpus_flag": "gpus",
    "partitions": {
        "gpu": {"max_gpus_per_node": 4},
        "gpu_h200": {"max_gpus_per_node": 4, "cpus_per_task": 24},
        "gpu_debug": {"max_gpus_per_node": 4, "max_time": "00:30:00"},
    },
}


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90", 5400),
        (90, 5400),
        ("10:30", 630),
        ("01:30:00", 5400),
        ("2-00", 172800),
        ("1-12:00", 129600),
        ("1-00:00:01", 86401),
    ],
)
def test_slurm_time_formats(text: object, seconds: int) -> None:
    assert time_limit_seconds(text) == seconds


@pytest.mark.parametrize("bad", ["2h", "1:2:3:4", "abc", "", "-5", "1-"])
def test_malformed_time_limit_is_refused_with_the_accepted_forms(bad: str) -> None:
    with pytest.raises(UserError, match=r"is not a Slurm time limit; write minutes \(90\), HH:MM:SS"):
        time_limit_seconds(bad)


@pytest.mark.parametrize("no_limit", ["0", 0, "00:00:00", "0-00:00", "UNLIMITED", "infinite", "-1"])
def test_no_time_limit_is_refused_with_the_reason(no_limit: object) -> None:
    """0 and UNLIMITED are valid to Slurm (no limit); normia refuses them because its requeue signal comes a fixed
    time before the limit, and says so instead of calling them malformed."""
    with pytest.raises(
        UserError, match=r"it means no time limit, and the requeue signal .* needs a finite one"
    ) as err:
        parse_launcher({"time": no_limit})
    assert "\n" not in str(err.value)


def test_format_seconds() -> None:
    assert format_seconds(5400) == "01:30:00"
    assert format_seconds(90061) == "1-01:01:01"


def test_gres_and_sinfo_parsing() -> None:
    assert gpus_in_gres("gpu:2") == 2
    assert gpus_in_gres("gpu:h200:4(S:0-1)") == 4
    assert gpus_in_gres("gpu:a100:4,shard:8") == 4
    assert gpus_in_gres("(null)") == 0
    parts = parse_sinfo(
        "debug*|1:00:00|node1|gpu:2|8\ndebug*|1:00:00|node2|gpu:2|8\nlong|infinite|node3|(null)|64\n"
    )
    assert parts["debug"].default and parts["debug"].nodes == 2 and parts["debug"].max_gpus_per_node == 2
    assert parts["debug"].max_time_s == 3600
    assert parts["long"].max_time_s is None and parts["long"].max_gpus_per_node == 0


def test_typo_in_launcher_key_gets_did_you_mean() -> None:
    with pytest.raises(
        UserError, match=r"unknown key 'launcher.gpus_per_nod' \(did you mean 'gpus_per_node'\?\)"
    ):
        parse_launcher({"name": "slurm", "gpus_per_nod": 4})


def test_wrong_type_and_bad_values_are_refused() -> None:
    with pytest.raises(UserError, match=r"launcher\.nodes"):
        parse_launcher({"nodes": "two"})
    with pytest.raises(UserError, match="one task per GPU"):
        parse_launcher({"gpus_per_node": 4, "tasks_per_node": 2})
    with pytest.raises(UserError, match=r"launcher\.signal='USR3'"):
        parse_launcher({"signal": "USR3"})
    with pytest.raises(UserError, match="signal_delay_s=600 must be between 0 and the time limit"):
        parse_launcher({"time": "00:05:00", "signal_delay_s": 600})


def _cfg(overrides: list[str], accelerator: str = "cpu", devices: int = 1) -> OmegaConf:
    return OmegaConf.create(
        {"trainer": {"accelerator": accelerator, "devices": devices, "num_nodes": 1}, "overrides": overrides}
    )


def test_trainer_follows_the_launcher() -> None:
    cfg = _cfg([], accelerator="auto")
    fit_trainer(cfg, nodes=2, tasks_per_node=4, gpus_per_node=4)
    assert (cfg.trainer.devices, cfg.trainer.num_nodes, cfg.trainer.accelerator) == (4, 2, "gpu")
    cfg = _cfg([], accelerator="auto")
    fit_trainer(cfg, nodes=1, tasks_per_node=2, gpus_per_node=0)
    assert (cfg.trainer.devices, cfg.trainer.accelerator) == (2, "cpu")
    cfg = _cfg(["trainer.devices=4"], accelerator="gpu", devices=4)  # explicit and consistent: fine
    fit_trainer(cfg, nodes=1, tasks_per_node=4, gpus_per_node=4)


def test_explicit_inconsistent_trainer_settings_are_refused() -> None:
    with pytest.raises(UserError, match=r"trainer.devices=3 but the Slurm job has 2 tasks per node"):
        fit_trainer(_cfg(["trainer.devices=3"], devices=3), nodes=2, tasks_per_node=2, gpus_per_node=0)
    cfg = _cfg(["trainer.num_nodes=1"])
    with pytest.raises(UserError, match=r"trainer.num_nodes=1 but the Slurm job has 2 nodes"):
        fit_trainer(cfg, nodes=2, tasks_per_node=1, gpus_per_node=0)
    with pytest.raises(UserError, match=r"trainer\.accelerator=cpu \(on the command line\).*add trainer=gpu"):
        fit_trainer(_cfg(["trainer.accelerator=cpu"]), nodes=1, tasks_per_node=2, gpus_per_node=2)
    with pytest.raises(UserError, match=r"trainer\.accelerator=cpu \(from the experiment's trainer preset\)"):
        fit_trainer(_cfg([]), nodes=1, tasks_per_node=2, gpus_per_node=2)  # not silently moved to the GPUs
    with pytest.raises(UserError, match=r"launcher\.gpus_per_node=0; ask for GPUs"):
        fit_trainer(_cfg([], accelerator="gpu"), nodes=1, tasks_per_node=1, gpus_per_node=0)


def test_preset_refuses_unknown_partition_and_too_many_gpus() -> None:
    with pytest.raises(UserError, match=r"unknown partition 'gpu_h100' .*\(did you mean 'gpu_h200'\?\)"):
        check_request(parse_launcher({**AUSTRAL_LIKE, "partition": "gpu_h100"}), live=None)
    with pytest.raises(
        UserError, match=r"gpus_per_node=8 but partition 'gpu_h200' allows at most 4 GPUs per node"
    ):
        check_request(parse_launcher({**AUSTRAL_LIKE, "gpus_per_node": 8}), live=None)
    with pytest.raises(
        UserError, match=r"launcher.time=01:00:00 is longer than partition 'gpu_debug' allows"
    ):
        check_request(
            parse_launcher({**AUSTRAL_LIKE, "partition": "gpu_debug", "time": "01:00:00"}), live=None
        )
    assert check_request(parse_launcher({**AUSTRAL_LIKE, "gpus_per_node": 4}), live=None) == "gpu_h200"


def test_dry_run_script_asks_for_the_signal_requeue_and_explicit_gpus(tmp_path) -> None:
    spec = parse_launcher(
        {
            **AUSTRAL_LIKE,
            "nodes": 2,
            "gpus_per_node": 4,
            "setup": ["module load aidl/pytorch"],
            "master_addr": "10.0.0.1",
        }
    )
    script = render_script(executor_params(spec, "gpu_h200", "normia-x"), tmp_path / "%j", "python", None)
    for line in (
        "#SBATCH --gpus-per-node=4",  # a total over 2 nodes could be split unevenly
        "#SBATCH --nodes=2",
        "#SBATCH --ntasks-per-node=4",
        "#SBATCH --requeue",
        "#SBATCH --signal=USR1@120",
        "#SBATCH --time=01:00:00",
        "#SBATCH --cpus-per-task=24",
        "#SBATCH --partition=gpu_h200",
        "export MASTER_ADDR=10.0.0.1",
        "module load aidl/pytorch",
        "--kill-on-bad-exit=1",
    ):
        assert line in script
    one_node = parse_launcher({**AUSTRAL_LIKE, "gpus_per_node": 4})
    assert "#SBATCH --gpus=4" in render_script(
        executor_params(one_node, "gpu_h200", "x"), tmp_path, "python", None
    )
    array = render_script(executor_params(spec, "gpu_h200", "normia-x"), tmp_path / "%j", "python", 3)
    assert "#SBATCH --array=0-2%3" in array


def test_master_address_that_does_not_resolve_is_refused_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """What each rank checks before training (the real resolver): a name nobody can resolve fails in seconds,
    naming the address and launcher.master_addr, instead of the ranks retrying it until the time limit."""
    monkeypatch.setenv("SLURM_NTASKS", "4")
    monkeypatch.setenv("MASTER_ADDR", "no-such-host.invalid")
    with pytest.raises(
        UserError,
        match=r"'no-such-host.invalid' \(MASTER_ADDR, set from launcher.master_addr\) does "
        r"not resolve on .*set launcher.master_addr to an address every node can reach",
    ):
        check_master_resolves(transient_s=0)
    monkeypatch.delenv("MASTER_ADDR")
    monkeypatch.setenv("SLURM_NODELIST", "gpu-nosuch[07-08]")  # Lightning's pick: the first node
    with pytest.raises(
        UserError, match=r"'gpu-nosuch07' \(the job's first node, launcher.master_addr unset\)"
    ):
        check_master_resolves(transient_s=0)
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    check_master_resolves(transient_s=0)
    monkeypatch.setenv("SLURM_NTASKS", "1")  # one rank: no rendezvous, nothing to check
    monkeypatch.setenv("MASTER_ADDR", "no-such-host.invalid")
    check_master_resolves(transient_s=0)


def test_which_python_the_ranks_run(tmp_path) -> None:
    """The ranks run this interpreter unless launcher.python names another; another venv's python links to the same
    base interpreter but has its own torch, so it counts as another Python."""
    assert runs_this_python(parse_launcher({}))
    assert runs_this_python(parse_launcher({"python": sys.executable}))
    other = tmp_path / "venv" / "bin" / "python"
    other.parent.mkdir(parents=True)
    other.symlink_to(os.path.realpath(sys.executable))
    assert not runs_this_python(parse_launcher({"python": str(other)}))
    assert not runs_this_python(parse_launcher({"python": "python", "setup": ["module load aidl/pytorch"]}))


def test_torch_build_is_read_from_its_version_file(tmp_path) -> None:
    cuda = tmp_path / "version.py"
    cuda.write_text(
        "from typing import Optional\n__version__ = '2.6.0+cu126'\ncuda: Optional[str] = '12.6'\n"
    )
    assert read_version_file(cuda).describe() == "torch 2.6.0+cu126 (CUDA 12.6)"
    cpu = tmp_path / "cpu_version.py"
    cpu.write_text("__version__ = '2.13.0+cpu'\ncuda = None\nhip = None\n")
    assert not read_version_file(cpu).has_gpu_support
    assert read_version_file(cpu).describe() == "torch 2.13.0+cpu (CPU-only build)"
