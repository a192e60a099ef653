"""The normia classes a config may name as `_target_`: the ONE place where a new model, data module or callback is
declared buildable.

Why a list of names and not the `normia.` prefix: a prefix reaches any module through attribute access
(`normia.training.checkpoint.torch.load` is torch.load; `normia.<module>.os.system` is os.system), and normia's own
functions with side effects (a file writer) are not meant to be called by a config. A name here is the class's
canonical path (its `__module__` + '.' + `__qualname__`): tests/security/test_declared_targets.py checks that each one
resolves to a class defined there, and that every `_target_` in normia's configs and project templates is declared.

Add a class: write its canonical path below (kept sorted), in the group it belongs to.
"""

from __future__ import annotations

NORMIA_PACKAGE = "normia"

MODELS = (
    "normia.models.baseline.MajorityBaseline",
    "normia.models.forecaster.PatchForecaster",
    "normia.models.hf.classifiers.HFCausalLM",
    "normia.models.hf.classifiers.HFSequenceClassifier",
    "normia.models.hf.classifiers.HFTokenClassifier",
    "normia.models.hf.llama.PretrainedLlama",
    "normia.models.llama.Llama",
    "normia.models.mlp.MLPClassifier",
    "normia.models.resnet.ResNetClassifier",
)
DATA_MODULES = (
    "normia.data.digits.DigitsDataModule",
    "normia.data.hf_tokens.TokenizedTextDataModule",
    "normia.data.images.ArrayImageDataModule",
    "normia.data.images.ImageFolderDataModule",
    "normia.data.images.ImageTableDataModule",
    "normia.data.series.SeriesDataModule",
    "normia.data.synthetic.SyntheticDataModule",
    "normia.data.table.TableDataModule",
    "normia.data.text.TextDataModule",
    "normia.data.text_csv.TextCSVDataModule",
)
CALLBACKS = ("normia.launch.preemption.SlurmPreemption",)

BUILDABLE = frozenset((*MODELS, *DATA_MODULES, *CALLBACKS))


def is_normia_name(target: str) -> bool:
    """True for a name in normia's namespace ('normia' or 'normia.<anything>'): only BUILDABLE decides those."""
    return target == NORMIA_PACKAGE or target.startswith(NORMIA_PACKAGE + ".")


def is_declared(target: str) -> bool:
    """True when `target` is exactly a declared buildable normia class (no prefix, no attribute path)."""
    return target in BUILDABLE
