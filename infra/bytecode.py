"""Bytecode in the Lambda package: what Chalice does not ship, and every cold start pays for.

Chalice vendors dependencies by unpacking wheels, without compiling them, and copies `chalicelib/`
as it is on disk. Lambda's `/var/task` is read-only, so a module without a valid `.pyc` there is
compiled from source on every cold start: compiling Powertools, Jinja2, Chalice's router and
Herald itself was most of Herald's import time (`make bench`, benchmark 4).

Chalice keeps the package it builds in `.chalice/deployments/<md5>-pythonX.Y.zip`, where the md5
covers requirements.txt, `app.py` and every file under `chalicelib/`, and reuses that file as it
is when nothing changed. So, right before `chalice deploy` or `chalice package`, `prepare()` builds
that package the way Chalice would (the same packager, hence the same file), and adds a `.pyc` for
every module in it (replacing any `__pycache__` copied from the working tree) in `unchecked-hash`
mode: valid whatever the zip does to file times, never re-validated, which is right for a package
whose name is the hash of its sources. Chalice then finds the file and ships it.

The bytecode is for this interpreter's version, which is also the Lambda runtime Chalice picks
(`python3.X` of the interpreter that runs it); a `.pyc` of another version would simply be ignored.
If a source changes between `prepare()` and Chalice's run, Chalice builds a new package without
bytecode: slower cold starts, never stale code.
"""

from __future__ import annotations

import compileall
import shutil
import sys
import tempfile
import zipfile
from pathlib import Path
from py_compile import PycInvalidationMode

ROOT = Path(__file__).resolve().parents[1]
MARKER = ".herald-bytecode"  # a zip entry: this package's dependencies are compiled already


def say(message: str) -> None:
    print(f"[bytecode] {message}", flush=True)


def python_version() -> str:
    """The Lambda runtime Chalice deploys with: the running interpreter's version."""
    from chalice.config import Config

    return Config().lambda_python_version


def dependency_package(project_dir: Path = ROOT) -> Path:
    """Chalice's cached dependency package, built now if it does not exist (as `chalice deploy` would)."""
    from chalice.deploy.packager import DependencyBuilder, LambdaDeploymentPackager, PipRunner, SubprocessPip
    from chalice.utils import UI, OSUtils

    osutils = OSUtils()
    builder = DependencyBuilder(
        osutils=osutils, pip_runner=PipRunner(pip=SubprocessPip(osutils=osutils), osutils=osutils)
    )
    packager = LambdaDeploymentPackager(osutils=osutils, dependency_builder=builder, ui=UI())
    return Path(packager.create_deployment_package(str(project_dir), python_version()))


def compile_package(archive: Path) -> int:
    """Add unchecked-hash `.pyc` files for every module in `archive`; the number added (0: done before)."""
    with zipfile.ZipFile(archive) as zipped:
        if MARKER in zipped.namelist():
            return 0
        with tempfile.TemporaryDirectory(prefix="herald-bytecode-") as scratch:
            tree = Path(scratch) / "tree"
            kept = [i for i in zipped.infolist() if "__pycache__/" not in i.filename]
            for info in kept:
                if info.filename.endswith(".py"):
                    zipped.extract(info, tree)
            if not compileall.compile_dir(
                tree, quiet=2, invalidation_mode=PycInvalidationMode.UNCHECKED_HASH, workers=0
            ):
                sys.exit(f"bytecode: a module in {archive} does not compile (a syntax error?)")
            compiled = sorted(p for p in tree.rglob("*.pyc") if p.parent.name == "__pycache__")
            rebuilt = Path(scratch) / "package.zip"
            with zipfile.ZipFile(rebuilt, "w", zipfile.ZIP_DEFLATED) as out:
                for info in kept:
                    out.writestr(info, zipped.read(info.filename))
                for pyc in compiled:
                    out.write(pyc, pyc.relative_to(tree).as_posix())
                out.writestr(MARKER, f"{sys.implementation.cache_tag}\n")
            shutil.move(rebuilt, archive)
    return len(compiled)


def prepare(project_dir: Path = ROOT) -> Path:
    """Run right before `chalice deploy` / `chalice package` (infra/stack.py, infra/package.py)."""
    archive = dependency_package(project_dir)
    added = compile_package(archive)
    prune(archive.parent, keep=archive)
    if added:
        say(f"compiled {added} modules into {archive.relative_to(project_dir)} ({python_version()})")
    return archive


def prune(deployments: Path, keep: Path, newest: int = 3) -> None:
    """Chalice writes a package per change of the app and never deletes one: keep a few."""
    packages = sorted(deployments.glob("*-python*.zip"), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in packages[newest:]:
        if old != keep:
            old.unlink(missing_ok=True)


if __name__ == "__main__":
    prepare()
