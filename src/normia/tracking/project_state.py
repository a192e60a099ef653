"""What a run records about the researcher's project (normia.project): its name, version and folders, and the git
state of its code (commit, dirty flag, and the uncommitted changes: a `git diff --stat` by default, the patch itself
only when NORMIA_RECORD_DIFF=1), so that a run made from a project can be traced back to, and re-run from, the exact
code that produced it (`normia reproduce` checks the commit).

Kept import-light (subprocess only): the tracker calls it on rank zero when the MLflow run is created.

Why git is asked about the project's own folders only (pathspecs): a project may live inside a larger repository
(a monorepo, a course's repo); the commit is that repository's, but "dirty" and the patch concern the project.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from normia.project import Project

PREFIX = "project."
DIFF_ARTIFACT = "project/git_diff.patch"
DIFF_STAT_ARTIFACT = "project/git_diff_stat.txt"
# The patch holds whatever was typed into the changed lines (a key pasted into a test, a token in a notebook): it is
# recorded only on request; by default a run records which files changed and by how many lines.
RECORD_DIFF_ENV = "NORMIA_RECORD_DIFF"
# A patch this large is not a few edits (a tracked data file rewritten?): the start is kept, with a note saying so.
MAX_DIFF_BYTES = 1_000_000
GIT_TIMEOUT_S = 30
# Untracked files that are not code even inside a package folder: Python's caches, editors' and notebooks' litter.
NOT_CODE_FOLDERS = frozenset(
    {"__pycache__", ".ipynb_checkpoints", ".mypy_cache", ".pytest_cache", ".ruff_cache"}
)
NOT_CODE_SUFFIXES = (".pyc", ".pyo", ".DS_Store", "~", ".swp")


@dataclass(frozen=True)
class ProjectState:
    """A snapshot of a project as a run saw it.

    commit/dirty: None when the project is not in a git work tree (or git is missing, or it has no commit yet).
    diff: `git diff HEAD` of the project's tracked files (None when clean or not asked for); diff_truncated when it
    was cut. diff_stat: `git diff --stat HEAD` of the same files (None when clean or not asked for).
    patch: whether the patch was asked for (artifacts() records it), else its stat.
    untracked: untracked files in the project's code and config folders, relative to the repository's top.
    """

    name: str | None
    version: str | None
    root: Path | None
    config_dirs: tuple[Path, ...]
    commit: str | None = None
    dirty: bool | None = None
    diff: str | None = None
    diff_truncated: bool = False
    untracked: tuple[str, ...] = ()
    diff_stat: str | None = None
    patch: bool = True

    def tags(self) -> dict[str, str]:
        """MLflow tags, `project.*`, beside normia's own `normia.git_commit`/`normia.version.normia`.
        Absent name/version/root are left out rather than recorded empty."""
        tags = {
            f"{PREFIX}config_dirs": os.pathsep.join(map(str, self.config_dirs)),
            f"{PREFIX}git_commit": self.commit or "unknown",
            f"{PREFIX}git_dirty": "unknown" if self.dirty is None else str(self.dirty).lower(),
        }
        for key, value in (("name", self.name), ("version", self.version), ("root", self.root)):
            if value is not None:
                tags[f"{PREFIX}{key}"] = str(value)
        return tags

    def artifacts(self) -> dict[str, str]:
        """{artifact path: text}: the uncommitted changes when the tree is dirty, masked like every artifact: the
        patch (DIFF_ARTIFACT) when it was captured, else the `git diff --stat` (DIFF_STAT_ARTIFACT).

        The patch applies with `git apply` on the recorded commit (git skips the leading `#` notes). Secrets in the
        changed lines (a token written into a config, a private key block, a token of a known shape) show as ***
        (config/masking.py), so a patch that needed one needs it typed again."""
        if not self.dirty:
            return {}
        from normia.config.masking import mask_text

        label = self.name or self.root or "project"
        if not self.patch:
            notes = [
                f"# normia: files changed in project {label} over commit {self.commit} (git diff --stat HEAD of its "
                f"tracked files; the patch itself is recorded with {RECORD_DIFF_ENV}=1)",
            ]
            notes += self._untracked_notes()
            return {DIFF_STAT_ARTIFACT: mask_text("\n".join(notes) + "\n" + (self.diff_stat or ""))}
        notes = [
            f"# normia: uncommitted changes of project {label} "
            f"over commit {self.commit} (git diff HEAD of its tracked files; apply with: git apply <this file>)",
        ]
        if self.diff_truncated:
            notes.append(f"# TRUNCATED: only the first {MAX_DIFF_BYTES} bytes of the diff are kept")
        notes += self._untracked_notes()
        text = "\n".join(notes) + "\n" + (self.diff or "")
        return {DIFF_ARTIFACT: mask_text(text)}

    def _untracked_notes(self) -> list[str]:
        # Names only, never contents: a file kept out of git is often kept out on purpose (.env, credentials,
        # a local config with a token), and masking cannot catch every way a secret is written.
        if not self.untracked:
            return []
        return [
            "# untracked files in the project's code and config folders (names only, their content is not "
            "recorded):",
            *(f"#   {name}" for name in self.untracked),
        ]


def _git(args: list[str], cwd: Path) -> str | None:
    """stdout of a git command, or None when git is missing, fails or hangs (tracking never stops a run)."""
    try:
        result = subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=GIT_TIMEOUT_S, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout


def _git_diff(cwd: Path, pathspecs: list[str]) -> tuple[str | None, bool]:
    """(`git diff HEAD` text, truncated?): read up to MAX_DIFF_BYTES, then stopped, so a huge diff costs nothing.
    No colour, no external diff tool or textconv filter: a plain patch that `git apply` takes; binary files show as
    'Binary files differ' (their content is not recorded)."""
    args = ["git", "diff", "--no-color", "--no-ext-diff", "--no-textconv", "HEAD", "--", *pathspecs]
    try:
        with subprocess.Popen(args, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL) as proc:
            assert proc.stdout is not None
            data = proc.stdout.read(MAX_DIFF_BYTES + 1)
            truncated = len(data) > MAX_DIFF_BYTES
            if truncated:
                proc.kill()
            else:
                proc.wait(timeout=GIT_TIMEOUT_S)
                if proc.returncode != 0:
                    return None, False
    except (OSError, subprocess.SubprocessError):
        return None, False
    return data[:MAX_DIFF_BYTES].decode("utf-8", errors="replace"), truncated


def _porcelain_paths(text: str, untracked: bool) -> list[str]:
    """Paths from `git status --porcelain=v1 -z`: the untracked ones (`??`) or the others."""
    entries = text.split("\0")
    out = []
    i = 0
    while i < len(entries):
        entry = entries[i]
        i += 1
        if len(entry) < 4:
            continue
        code, path = entry[:2], entry[3:]
        if code[0] in "RC":
            i += 1  # a rename's second field is its source path
        if (code == "??") == untracked:
            out.append(path)
    return out


def _inside(folders: list[Path], top: Path) -> list[str]:
    """The folders that lie in the repository (git refuses a pathspec outside it), as pathspecs relative to top."""
    specs = []
    for folder in folders:
        try:
            rel = folder.resolve().relative_to(top)
        except ValueError:
            continue
        specs.append(str(rel))  # "." for the top itself
    return specs


def code_folders(project: Project) -> list[Path]:
    """Folders holding what a run executes: the project's packages and config folders.

    Only there does an untracked file make the tree dirty: a new module that a config names ran and is not in the
    commit, whereas untracked files elsewhere in the project (outputs/, mlflow.db, notebooks, data) are not code.
    (normia's own checkout ignores untracked files altogether, `--untracked-files=no`: its code is all tracked.)"""
    folders = [
        path / pkg for path in project.import_paths for pkg in project.packages if (path / pkg).is_dir()
    ]
    return [*folders, *project.config_dirs]


def _is_code(path: str) -> bool:
    parts = path.split("/")
    return not (NOT_CODE_FOLDERS.intersection(parts[:-1]) or parts[-1].endswith(NOT_CODE_SUFFIXES))


def record_diff_requested() -> bool:
    """Whether this run records the patch of the uncommitted changes (NORMIA_RECORD_DIFF=1), not only their stat."""
    return os.environ.get(RECORD_DIFF_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def capture(project: Project, with_diff: bool = True, with_stat: bool = False) -> ProjectState:
    """The project's state now. with_diff=False skips reading the patch (reproduce only needs commit and dirty);
    with_stat=True reads `git diff --stat HEAD` instead when the patch is not read."""
    state = ProjectState(
        name=project.name, version=project.version, root=project.root, config_dirs=tuple(project.config_dirs)
    )
    folders = [project.root] if project.root is not None else list(project.config_dirs)
    if not folders:
        return state
    head = (_git(["rev-parse", "HEAD", "--show-toplevel"], folders[0]) or "").splitlines()
    if len(head) != 2:
        return state  # not in a git work tree, git missing, or no commit yet
    commit, top = head[0].strip(), Path(head[1]).resolve()
    state = replace(state, commit=commit)
    tracked_specs = _inside(folders, top)
    if not tracked_specs:
        return state  # config folders outside the repository found around the first one
    code_specs = _inside(code_folders(project), top)
    status = _git(["status", "--porcelain=v1", "-z", "--untracked-files=no", "--", *tracked_specs], top)
    found = (
        _git(["status", "--porcelain=v1", "-z", "--untracked-files=all", "--", *code_specs], top)
        if code_specs
        else ""
    )
    if status is None or found is None:
        return state  # dirty unknown
    changed = _porcelain_paths(status, untracked=False)
    untracked = tuple(sorted(p for p in _porcelain_paths(found, untracked=True) if _is_code(p)))
    diff, truncated = _git_diff(top, tracked_specs) if changed and with_diff else (None, False)
    stat = None
    if changed and with_stat and not with_diff:
        stat = _git(["diff", "--stat", "--no-color", "--no-ext-diff", "HEAD", "--", *tracked_specs], top)
    return replace(
        state,
        dirty=bool(changed or untracked),
        diff=diff,
        diff_truncated=truncated,
        untracked=untracked,
        diff_stat=stat,
        patch=with_diff,
    )


def project_record(project: Project | None = None) -> tuple[dict[str, str], dict[str, str]]:
    """(tags, artifacts) of this process's project (normia.project.current_project()), from one snapshot so that
    the dirty flag and the changes agree: the `git diff --stat` of the changes, or their patch when
    NORMIA_RECORD_DIFF=1; ({}, {}) outside a project: nothing is recorded, not even empty tags."""
    if project is None:
        from normia.project import current_project

        project = current_project()
    if project is None:
        return {}, {}
    record_diff = record_diff_requested()
    state = capture(project, with_diff=record_diff, with_stat=not record_diff)
    return state.tags(), state.artifacts()
