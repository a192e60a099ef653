"""A new project starts as a git repository with a first commit: normia records the commit (and whether the tree
was dirty) of the project every run is made from, so a project without git records nothing to reproduce it from
(issue 25 D: `normia init` made no repository)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

# Used only when git has no identity configured (a fresh account on a cluster): the first commit is normia's scaffold.
FALLBACK_IDENTITY = ("-c", "user.name=normia init", "-c", "user.email=normia-init@localhost")


def _git(target: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], cwd=target, capture_output=True, text=True, timeout=60, check=False)


def init_repository(target: Path) -> str:
    """Make `target` a git repository with every file of the scaffold in a first commit; returns the line the report
    prints. Leaves an enclosing repository alone (the project is then part of it), and never fails the init."""
    if shutil.which("git") is None:
        return "git: not found, so runs will record no commit: run `git init` in the project once git is installed"
    inside = _git(target, "rev-parse", "--show-toplevel")
    if inside.returncode == 0:
        return f"git: the project is inside the repository {inside.stdout.strip()}: commit it there"
    steps = [("init", "-q"), ("add", "-A")]
    for step in steps:
        done = _git(target, *step)
        if done.returncode != 0:
            return f"git: `git {' '.join(step)}` failed ({done.stderr.strip()[:200]}): runs will record no commit"
    message = "Project scaffold from normia init"
    done = _git(target, "commit", "-q", "-m", message)
    if done.returncode != 0:  # no user.name/user.email configured
        done = _git(target, *FALLBACK_IDENTITY, "commit", "-q", "-m", message)
        if done.returncode != 0:
            return f"git: the first commit failed ({done.stderr.strip()[:200]}): commit the project yourself"
        return (
            "git: a new repository with a first commit (as 'normia init': set git's user.name and user.email)"
        )
    return "git: a new repository with a first commit (runs record the project's commit)"
