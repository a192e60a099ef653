"""Which data a run trained on: a content digest, size and row count of each input, found from the composed config.

A run's inputs are read from its `data` config node, never from the data modules themselves (any data module, a
project's own included, is covered by the same rules):

- every key named like a location (`path`, `root`, `dir`, `folder`, `file`, `files`, `shards`, or ending in
  `_path`, `_root`, `_dir`, ...) whose value names a file or a folder: a file's sha256 over its bytes (row count in
  the same pass for text tables), a folder's sha256 over its sorted relative listing and each file's digest;
- packaged datasets, which have no file of their own: scikit-learn's digits (`DigitsDataModule`), statsmodels'
  series (`data.dataset`), normia's bundled corpora (`data.corpus`: the bundled file's digest, normia's version);
- nothing else (synthetic data, a project's generator): the data module and a digest of its settings.

The pretrained model a run starts from is an input too (a LoRA adapter is useless without its exact base): the
location keys of the `model` node (`model.path`, given as describe_inputs(..., model=)) and a data module's
`data.tokenizer` (`${model.path}` in data=text_csv and data=hf_text, so the model folder is recorded even where only
the data node is passed) are recorded with the folder digest data folders get, when they name a local file or
folder (a hub name is not read here). A tokenizer folder that is a recorded model folder is recorded once, as the
model's. The weights of a multi-GB folder cost what a data corpus costs: files over 1 GiB get partial digests and
every file's digest is kept in the digest manifest, so the next run on the same model reads nothing.

Cost: each file is read once, in 1 MiB chunks (hashlib.sha256, rows counted in the same pass). A file over 1 GiB
gets a *partial* digest instead: sha256 over its size and its first and last 64 MiB, with its mtime recorded beside
it; the record and every message say `partial`, because a change in the middle of such a file is not seen.
Digests are cached per (path, size, mtime, inode) within a process, so `normia reproduce` reads a file once for its
pre-run check and the run it starts in the same process, and across processes in a digest manifest
(tracking/digest_manifest.py): a requeued job or the next run on the same corpus reuses the digest of every file
whose path, size, mtime, inode and device are unchanged, and its record says so (`digest_reused`).

Each input is recorded twice (mlflow_logger.py): as an MLflow dataset input (`mlflow.data.meta_dataset.MetaDataset`
with a filesystem or code source and the digest: MLflow's own, well-kept record, shown in its UI's Dataset column)
and as a tag `normia.input.<config key>` holding this module's JSON record, which `normia reproduce` compares
without parsing MLflow's dataset entities. Kept import-light (hashlib, json, os): mlflow is imported only to log.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from normia.tracking.digest_manifest import manifest, stat_key, verify_budget_bytes

CHUNK_BYTES = 1 << 20  # 1 MiB reads
PARTIAL_ABOVE_BYTES = 1 << 30  # files over 1 GiB get a partial digest
EDGE_BYTES = 64 << 20  # ... over their first and last 64 MiB
TAG_PREFIX = "normia.input."
DIGEST_TAG_PREFIX = "normia.data.digest."
MLFLOW_DIGEST_CHARS = (
    10  # MLflow recommends at most 10 (mlflow.data.dataset); the full sha256 is in the profile
)
LOCATION_NAMES = ("path", "root", "dir", "folder", "file", "files", "shards")
LOCATION_SUFFIXES = (*(f"_{name}" for name in LOCATION_NAMES), "_paths", "_dirs", "_folders")
# Table files whose first line is a header: rows = lines - 1. Other text files: rows = lines.
TABLE_SUFFIXES = (".csv", ".tsv")
TEXT_SUFFIXES = (".txt", ".jsonl", ".ndjson")
SKIPPED_IN_FOLDERS = frozenset({"__pycache__"})
# Data modules whose data ships inside a package: (package, dataset name).
PACKAGED_TARGETS = {"normia.data.digits.DigitsDataModule": ("scikit-learn", "sklearn.datasets.load_digits")}
SETTINGS_NOT_DATA = ("batch_size", "num_workers", "pin_memory", "persistent_workers", "prefetch_factor")
CORPORA_PACKAGE = "normia.data.corpora"
CORPUS_SUFFIXES = (".txt", ".csv")  # bundled texts, then bundled tables (data/text_csv.py's bundled_tables)
# Data modules that read a folder a key leaves unset: {target: (key, key of the file whose folder it defaults to)}.
DERIVED_FOLDERS = {"normia.data.images.ImageTableDataModule": ("root", "path")}
# Keys of a data node naming a pretrained model's folder rather than data (data.tokenizer: ${model.path}).
MODEL_FOLDER_KEYS = ("tokenizer",)


@dataclass(frozen=True)
class Digest:
    """A file's or folder's content digest.

    sha256: hex digest (64 characters). size: bytes (a folder: the sum of its files). rows: data rows (a table:
    lines minus the header; a text file: lines), None when not counted (binary files, folders, partial digests).
    files: how many files a folder holds (None for a file). partial: the digest covers only the size and the first
    and last EDGE_BYTES of a file over PARTIAL_ABOVE_BYTES (in a folder: of at least one such file).
    mtime: seconds since the epoch (a folder: its newest file's).
    """

    sha256: str
    size: int
    rows: int | None = None
    files: int | None = None
    partial: bool = False
    mtime: float = 0.0


DIGEST_FIELDS = frozenset(f.name for f in fields(Digest))
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_CACHE: dict[tuple[str, int, int, int, int], Digest] = {}


def is_location_key(name: str) -> bool:
    """Whether a config key names a place on disk: path, root, dir, folder, file(s), shards, or *_path, *_dir, ..."""
    return name in LOCATION_NAMES or name.endswith(LOCATION_SUFFIXES)


def _count_rows(path: Path, lines: int, last_byte: bytes) -> int | None:
    name = path.name.lower()
    if lines == 0 and not last_byte:
        return 0
    if last_byte and last_byte != b"\n":
        lines += 1  # a last line without its newline
    if name.endswith(TABLE_SUFFIXES):
        return max(lines - 1, 0)
    if name.endswith(TEXT_SUFFIXES):
        return lines
    return None


def _parquet_rows(path: Path) -> int | None:
    """Rows of a Parquet file from its footer (a few KB read), when pyarrow is installed."""
    try:
        import pyarrow.parquet as pq

        return int(pq.ParquetFile(path).metadata.num_rows)
    except Exception:  # no pyarrow, or not a Parquet file after all: the row count is optional
        return None


def file_digest(path: str | Path) -> Digest:
    """The digest of one file, reading it once in CHUNK_BYTES chunks (rows counted in the same pass); over
    PARTIAL_ABOVE_BYTES: sha256(size, first EDGE_BYTES, last EDGE_BYTES), partial=True, rows not counted.
    Raises OSError when the file cannot be read."""
    p = Path(path)
    st = p.stat()
    key = (str(p.resolve()), st.st_size, st.st_mtime_ns, st.st_ino, st.st_dev)
    if key in _CACHE:
        return _CACHE[key]
    kept = manifest()
    identity = stat_key(Path(key[0]), st)
    known = kept.get(identity)
    if known is not None:
        _CACHE[key] = Digest(**{k: v for k, v in known.items() if k in DIGEST_FIELDS})
        return _CACHE[key]
    digest = _compute_digest(p, st)
    _CACHE[key] = digest
    kept.put(identity, asdict(digest), st.st_size)
    return digest


def _compute_digest(p: Path, st: os.stat_result) -> Digest:
    """Read the file (or its edges, over PARTIAL_ABOVE_BYTES) and digest it."""
    sha = hashlib.sha256()
    if st.st_size > PARTIAL_ABOVE_BYTES:
        sha.update(f"partial-v1 size={st.st_size}\n".encode())
        with p.open("rb") as f:
            for offset in (0, st.st_size - EDGE_BYTES):
                f.seek(offset)
                left = EDGE_BYTES
                while left > 0:
                    chunk = f.read(min(CHUNK_BYTES, left))
                    if not chunk:
                        break
                    sha.update(chunk)
                    left -= len(chunk)
        digest = Digest(sha.hexdigest(), st.st_size, partial=True, mtime=st.st_mtime)
    else:
        lines, last = 0, b""
        counted = p.name.lower().endswith(TABLE_SUFFIXES + TEXT_SUFFIXES)  # images, shards: no rows to count
        with p.open("rb") as f:
            while chunk := f.read(CHUNK_BYTES):
                sha.update(chunk)
                if counted:
                    lines += chunk.count(b"\n")
                last = chunk[-1:]
        rows = _parquet_rows(p) if p.suffix.lower() == ".parquet" else _count_rows(p, lines, last)
        digest = Digest(sha.hexdigest(), st.st_size, rows=rows, mtime=st.st_mtime)
    return digest


def verify_reused() -> list[str]:
    """Re-read some of the digests this process took from the manifest (digest_manifest.py: least recently
    verified first, up to NORMIA_DIGEST_VERIFY_MB) and drop those that no longer match. Returns the paths whose
    digest was wrong: their stat identity lied (a file rewritten in place with its old mtime put back)."""
    kept = manifest()
    wrong = []
    for identity in kept.due_for_check(verify_budget_bytes()):
        path = Path(identity.split("\0", 1)[0])
        try:
            st = path.stat()
            if stat_key(path, st) != identity:
                continue  # changed since it was looked up: the next run reads it as new
            fresh = _compute_digest(path, st)
        except OSError:
            continue
        if fresh.sha256 == (kept.entry(identity) or {}).get("sha256"):
            kept.confirm(identity)
        else:
            kept.drop(identity)
            for cached in [k for k in _CACHE if k[0] == str(path)]:
                del _CACHE[cached]
            wrong.append(str(path))
    return wrong


def _folder_files(folder: Path) -> Iterator[tuple[str, Path]]:
    """(relative path with '/', path) of every regular file under folder, sorted, hidden names and caches skipped."""
    for top, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in SKIPPED_IN_FOLDERS)
        for name in sorted(files):
            if name.startswith("."):
                continue
            full = Path(top) / name
            if full.is_file():
                yield full.relative_to(folder).as_posix(), full


def files_digest(entries: list[tuple[str, Path]]) -> Digest:
    """The digest of a listing: sha256 over each '<name>\\0<size>\\0<file sha256>' line, in the given order.
    Raises OSError when a file cannot be read."""
    sha = hashlib.sha256(b"listing-v1\n")
    size, partial, mtime = 0, False, 0.0
    for name, full in entries:
        one = file_digest(full)
        sha.update(f"{name}\0{one.size}\0{one.sha256}\n".encode())
        size += one.size
        partial |= one.partial
        mtime = max(mtime, one.mtime)
    return Digest(sha.hexdigest(), size, files=len(entries), partial=partial, mtime=mtime)


def folder_digest(folder: str | Path) -> Digest:
    """A folder's digest over its sorted relative listing and each file's digest (see files_digest)."""
    return files_digest(list(_folder_files(Path(folder))))


@dataclass
class InputRecord:
    """One input of a run, as recorded in MLflow and compared by `normia reproduce`.

    key: the config key (`data.path`). kind: file | folder | files | package | bundled | generated | remote (a URL,
    recorded by address only) | missing | unreadable. name: what the MLflow UI shows. sha256: the content digest (for package/generated: of their
    identity: name, package and version, or settings). path: as configured; abs_path: resolved at record time;
    rel_path/rel_root: the same place relative to the project root (`project`) or working folder (`cwd`) when it
    lies inside one, so that a partner's copy at the same relative place is found. package/version: the
    distribution that ships a packaged dataset (or normia for its corpora). size in bytes, rows, files, partial,
    mtime: see Digest. error: why a file could not be read.
    """

    key: str
    kind: str
    name: str
    sha256: str = ""
    path: str | list[str] | None = None
    abs_path: str | None = None
    rel_path: str | None = None
    rel_root: str | None = None
    package: str | None = None
    version: str | None = None
    size: int | None = None
    rows: int | None = None
    files: int | None = None
    partial: bool = False
    mtime: float | None = None
    error: str | None = None
    extra: dict[str, str] = field(default_factory=dict)
    digest_reused: bool = (
        False  # every file's digest came from the digest manifest (unchanged stat), none read
    )

    def to_json(self) -> str:
        """Compact JSON without empty fields (an MLflow tag holds 8000 characters)."""
        return json.dumps(
            {k: v for k, v in asdict(self).items() if v not in (None, "", {}, False)}, sort_keys=True
        )

    @classmethod
    def from_json(cls, text: str) -> InputRecord:
        """Raises ValueError on text that is not a record (a tag written by hand, another tool)."""
        data = json.loads(text)
        if not isinstance(data, dict) or "key" not in data or "kind" not in data:
            raise ValueError("not an input record")
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)

    def label(self) -> str:
        """'sha256 ab12cd34ef56' or 'partial sha256 ab12cd34ef56' (size + first/last 64 MiB)."""
        return f"{'partial ' if self.partial else ''}sha256 {self.sha256[:12]}"

    def describe(self) -> str:
        """One line: what it is, where, digest, size and rows."""
        parts = [self.label()]
        if self.package:
            parts.append(f"{self.package} {self.version or '?'}")
        if self.size is not None:
            parts.append(f"{self.size} bytes")
        if self.rows is not None:
            parts.append(f"{self.rows} rows")
        if self.files is not None:
            parts.append(f"{self.files} files")
        where = self.abs_path or self.name
        return f"{self.key}: {where} ({', '.join(parts)})"


def _version(dist: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _relative(abs_path: Path, roots: list[tuple[str, Path]]) -> tuple[str | None, str | None]:
    for label, root in roots:
        try:
            return abs_path.relative_to(root.resolve()).as_posix(), label
        except ValueError:
            continue
    return None, None


def _identity_digest(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def _is_paths(value: Any) -> bool:
    return isinstance(value, str) or (
        isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value)
    )


def _location_leaves(node: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for key, value in node.items():
        name = str(key)
        if name.startswith("_"):
            continue
        if isinstance(value, Mapping):
            yield from _location_leaves(value, f"{prefix}{name}.")
        elif is_location_key(name) and value not in (None, "", [], ()) and _is_paths(value):
            yield f"{prefix}{name}", value


def path_record(key: str, value: str | list[str], cwd: Path, roots: list[tuple[str, Path]]) -> InputRecord:
    """The record of a location value: a file, a folder, or a list of files (digest of the list, in its order).
    A place that does not exist gives kind 'missing'; one that cannot be read, kind 'unreadable' (never raises)."""
    values = [value] if isinstance(value, str) else list(value)
    if any(_URL.match(v) for v in values):
        # s3://, https://, hf://...: not read here (that would download it); recorded by address only.
        shown = values[0] if len(values) == 1 else f"{len(values)} remote files"
        return InputRecord(key=key, kind="remote", name=shown, path=value, sha256=_identity_digest(values))
    places = [(cwd / Path(v).expanduser()).resolve() for v in values]
    name = places[0].name if len(places) == 1 else f"{len(places)} files"
    record = InputRecord(key=key, kind="missing", name=name, path=value)
    if len(places) == 1:
        record.abs_path = str(places[0])
        record.rel_path, record.rel_root = _relative(places[0], roots)
    else:
        record.abs_path = os.path.commonpath([str(p) for p in places])
    missing = [str(p) for p in places if not p.exists()]
    if missing:
        record.error = f"{missing[0]} does not exist"
        return record
    kept = manifest()
    reused_before, computed_before = kept.reused, kept.computed
    try:
        if len(places) == 1 and places[0].is_dir():
            digest, kind = folder_digest(places[0]), "folder"
        elif len(places) == 1:
            digest, kind = file_digest(places[0]), "file"
        else:
            entries = [(v, p) for v, p in zip(values, places)]
            digest, kind = files_digest(entries), "files"
    except OSError as err:
        record.kind, record.error = "unreadable", f"{err.strerror or err}: {err.filename or record.abs_path}"
        return record
    record.kind, record.sha256, record.size = kind, digest.sha256, digest.size
    record.rows, record.files, record.partial, record.mtime = (
        digest.rows,
        digest.files,
        digest.partial,
        digest.mtime,
    )
    record.digest_reused = kept.computed == computed_before and kept.reused > reused_before
    return record


def _packaged(data: Mapping[str, Any], target: str) -> list[InputRecord]:
    import normia

    out = []
    if target in PACKAGED_TARGETS:
        package, name = PACKAGED_TARGETS[target]
        version = _version(package)
        out.append(
            InputRecord(
                key="data", kind="package", name=name, package=package, version=version,
                sha256=_identity_digest(name, package, version), extra={"module": target.rsplit(".", 1)[-1]},
            )
        )  # fmt: skip
    dataset = data.get("dataset")
    if isinstance(dataset, str) and dataset:
        # SeriesDataModule's data.dataset: a series that statsmodels ships (co2, elnino).
        name, version = f"statsmodels.datasets.{dataset}", _version("statsmodels")
        out.append(
            InputRecord(
                key="data.dataset", kind="package", name=name, package="statsmodels", version=version,
                sha256=_identity_digest(name, "statsmodels", version),
            )
        )  # fmt: skip
    corpus = data.get("corpus")
    if not corpus and not data.get("path") and not data.get("shards"):
        corpus = data.get("default_corpus")  # an experiment's bundled table, read when no data is given
    if isinstance(corpus, str) and corpus:
        out.append(_bundled_corpus(corpus, normia.__version__))
    return out


def _bundled_corpus(corpus: str, version: str) -> InputRecord:
    """normia's bundled text or table (data.corpus: a .txt for data=hf_text and the byte-level LMs, a .csv for
    data=text_csv): the file's own digest, and normia's version."""
    from importlib import resources

    record = InputRecord(
        key="data.corpus", kind="bundled", name=f"normia corpus {corpus}", package="normia", version=version
    )
    try:
        folder = resources.files(CORPORA_PACKAGE)
        found = [
            folder / f"{corpus}{suffix}"
            for suffix in CORPUS_SUFFIXES
            if (folder / f"{corpus}{suffix}").is_file()
        ]
        path = Path(str(found[0] if found else folder / f"{corpus}{CORPUS_SUFFIXES[0]}"))
        digest = file_digest(path)
    except (OSError, ModuleNotFoundError) as err:
        record.kind, record.error = "missing", str(err)
        return record
    record.sha256, record.size, record.rows, record.abs_path = (
        digest.sha256,
        digest.size,
        digest.rows,
        str(path),
    )
    return record


def _generated(data: Mapping[str, Any], target: str) -> InputRecord:
    """Data with no file (synthetic, a generator): its module and a digest of the settings that make it."""
    import normia

    settings = {k: v for k, v in data.items() if k not in SETTINGS_NOT_DATA}
    module = target.split(".", 1)[0] or "unknown"
    package, version = ("normia", normia.__version__) if module == "normia" else (module, _version(module))
    return InputRecord(
        key="data", kind="generated", name=target.rsplit(".", 1)[-1] or "data", package=package, version=version,
        sha256=_identity_digest(target, settings),
    )  # fmt: skip


def default_roots(cwd: Path | None = None) -> list[tuple[str, Path]]:
    """Where relative paths are recorded from: the project's root (when this process runs in a project), then the
    working folder."""
    roots: list[tuple[str, Path]] = []
    try:
        from normia.project import current_project

        project = current_project()
        if project is not None and project.root is not None:
            roots.append(("project", Path(project.root)))
    except Exception:  # a broken pyproject.toml must not stop recording: the cwd remains
        pass
    roots.append(("cwd", cwd or Path.cwd()))
    return roots


def _local_place(value: Any, cwd: Path) -> Path | None:
    """The resolved local file or folder a string names, or None (a hub name such as 'camembert-base', a URL,
    a place that does not exist)."""
    if not isinstance(value, str) or not value or _URL.match(value):
        return None
    place = (cwd / Path(value).expanduser()).resolve()
    return place if place.exists() else None


def model_records(
    model: Mapping[str, Any] | None, data: Mapping[str, Any] | None, cwd: Path, roots: list[tuple[str, Path]]
) -> list[InputRecord]:
    """The pretrained model folder(s) a run starts from: the location keys of the `model` node (`model.path`) and
    the data node's tokenizer folder (MODEL_FOLDER_KEYS), each recorded once (a tokenizer folder that is the
    model's is the model's record). Only places that exist here are recorded: a missing model folder is refused
    by the model's own checks, with their fix, before anything is read."""
    records: list[InputRecord] = []
    seen: set[Path] = set()
    candidates = [(f"model.{key}", value) for key, value in _location_leaves(model or {})]
    candidates += [(f"data.{key}", (data or {}).get(key)) for key in MODEL_FOLDER_KEYS]
    for key, value in candidates:
        place = _local_place(value, cwd) if isinstance(value, str) else None
        if place is None or place in seen:
            continue
        seen.add(place)
        records.append(path_record(key, str(value), cwd, roots))
    return records


def describe_inputs(
    data: Mapping[str, Any] | None,
    cwd: Path | None = None,
    roots: list[tuple[str, Path]] | None = None,
    model: Mapping[str, Any] | None = None,
) -> list[InputRecord]:
    """Every input of a run from its resolved `data` config node (a plain mapping), in a stable order, then the
    pretrained model folder it starts from (`model`: the resolved `model` node; see model_records).

    cwd: the folder relative paths are read from (default: the current one); roots: where relative paths are
    recorded from (default_roots). Never raises for a missing or unreadable file: the record says so."""
    if not data and not model:
        return []
    cwd = cwd or Path.cwd()
    roots = roots if roots is not None else default_roots(cwd)
    records = _data_records(data, cwd, roots) if data else []
    records += model_records(model, data, cwd, roots)
    wrong = verify_reused()
    if wrong:
        print(
            f"warning: the recorded data digest of {', '.join(wrong)} was wrong (the file changed although its "
            "size, mtime, inode and device did not): read again",
            flush=True,
        )
        manifest().save()
        return describe_inputs(data, cwd, roots, model)  # the dropped entries are read this time
    manifest().save()
    return records


def _data_records(data: Mapping[str, Any], cwd: Path, roots: list[tuple[str, Path]]) -> list[InputRecord]:
    """The data node's own inputs: its locations, a folder a data module derives, packaged data, else the
    generator's settings."""
    target = str(data.get("_target_", ""))
    records = [path_record(f"data.{key}", value, cwd, roots) for key, value in _location_leaves(data)]
    if target in DERIVED_FOLDERS:
        key, beside = DERIVED_FOLDERS[target]
        if not data.get(key) and isinstance(data.get(beside), str) and data.get(beside):
            # e.g. image_table.yaml: root null reads the images beside the label table
            folder = str(Path(str(data[beside])).expanduser().parent)
            records.append(path_record(f"data.{key}", folder, cwd, roots))
    records += _packaged(data, target)
    if not records:
        records.append(_generated(data, target))
    return records


def reuse_note(records: list[InputRecord]) -> str | None:
    """One line naming the inputs whose digests came from the manifest (nothing read), or None."""
    reused = [r.key for r in records if r.digest_reused]
    if not reused:
        return None
    where = manifest().path
    return (
        f"data digests reused from {where} (size, mtime, inode unchanged; not re-read): {', '.join(reused)}"
    )


def input_tags(records: list[InputRecord]) -> dict[str, str]:
    """{`normia.input.<key>`: JSON record, `normia.data.digest.<key>`: '[partial-]sha256:<hex>'} for MLflow: the
    record for reproduce, the digest alone to find runs on the same data (`tags."normia.data.digest.data.path" =
    'sha256:...'` in the UI's search)."""
    tags = {}
    for r in records:
        tags[f"{TAG_PREFIX}{r.key}"] = r.to_json()[:8000]
        if r.sha256:
            tags[f"{DIGEST_TAG_PREFIX}{r.key}"] = f"{'partial-' if r.partial else ''}sha256:{r.sha256}"
    return tags


def recorded_inputs(tags: Mapping[str, str]) -> dict[str, InputRecord]:
    """The records a run's tags hold, by key; tags that are not records are skipped."""
    out = {}
    for tag, text in tags.items():
        if tag.startswith(TAG_PREFIX):
            try:
                record = InputRecord.from_json(text)
            except (ValueError, TypeError):
                continue
            out[record.key] = record
    return out


def mlflow_datasets(records: list[InputRecord]) -> list[Any]:
    """The records as `mlflow.entities.DatasetInput`s (context 'training'), built with MLflow's own dataset API:
    a MetaDataset over a local filesystem source (files, folders) or a code source (packaged, generated data),
    with our digest (cut to MLflow's 36-character limit) and the full record as its profile."""
    from mlflow.data.code_dataset_source import CodeDatasetSource
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.data.sources import LocalArtifactDatasetSource
    from mlflow.entities import DatasetInput, InputTag

    class _Profiled(MetaDataset):
        """MetaDataset has no profile of its own; ours is the normia record (size, rows, full sha256, partial)."""

        def __init__(self, source: Any, name: str, digest: str, profile: str) -> None:
            super().__init__(source, name=name, digest=digest)
            self._profile = profile

        @property
        def profile(self) -> Any:
            return self._profile

        def to_dict(self) -> dict[str, str]:
            return {**super().to_dict(), "profile": self._profile}

    out = []
    for record in records:
        if record.kind in ("file", "folder", "files", "missing", "unreadable") and record.abs_path:
            source: Any = LocalArtifactDatasetSource(record.abs_path)
        else:
            source = CodeDatasetSource(
                tags={
                    "package": record.package or "",
                    "version": record.version or "",
                    "dataset": record.name,
                }
            )
        prefix = "p" if record.partial else ""
        digest = (prefix + record.sha256)[:MLFLOW_DIGEST_CHARS] if record.sha256 else record.kind
        # The UI's Dataset column: a file's or folder's name, else the data module (its source names the package).
        shown = record.extra.get("module") or record.name
        dataset = _Profiled(source, name=shown[:500], digest=digest, profile=record.to_json())
        tags = [
            InputTag(key="mlflow.data.context", value="training"),
            InputTag(key="normia.key", value=record.key),
        ]
        out.append(DatasetInput(dataset._to_mlflow_entity(), tags=tags))
    return out
