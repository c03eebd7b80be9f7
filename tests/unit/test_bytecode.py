"""infra/bytecode.py: the package Chalice ships gets a .pyc for every module, once."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import zipfile
from pathlib import Path

from infra.bytecode import MARKER, compile_package, prune

TAG = sys.implementation.cache_tag


def make_package(path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("app.py", "import lib.mod\nVALUE = lib.mod.VALUE\n")
        z.writestr("lib/__init__.py", "")
        z.writestr("lib/mod.py", "VALUE = 42\n")
        z.writestr(f"lib/__pycache__/mod.{TAG}.pyc", b"stale bytes from a working tree")
        z.writestr("lib/data.txt", "kept as is")
    return path


def test_every_module_gets_an_unchecked_hash_pyc_and_stale_ones_are_replaced(tmp_path):
    archive = make_package(tmp_path / "pkg.zip")
    assert compile_package(archive) == 3
    with zipfile.ZipFile(archive) as z:
        names = z.namelist()
        assert len(names) == len(set(names))  # the stale .pyc was replaced, not duplicated
        assert {f"__pycache__/app.{TAG}.pyc", f"lib/__pycache__/mod.{TAG}.pyc", MARKER} <= set(names)
        assert z.read("lib/data.txt") == b"kept as is"
        pyc = z.read(f"lib/__pycache__/mod.{TAG}.pyc")
    assert pyc[:4] == importlib.util.MAGIC_NUMBER
    assert int.from_bytes(pyc[4:8], "little") == 0b01  # hash-based, source not checked


def test_a_compiled_package_runs_from_its_bytecode_without_writing_any(tmp_path):
    archive = make_package(tmp_path / "pkg.zip")
    compile_package(archive)
    task = tmp_path / "task"
    with zipfile.ZipFile(archive) as z:
        z.extractall(task)
    (task / "lib" / "mod.py").write_text("VALUE = 'source'\n")  # were the source read, this would show
    result = subprocess.run(
        [sys.executable, "-B", "-c", "import app; print(app.VALUE)"], cwd=task, capture_output=True, text=True
    )
    assert result.stdout.strip() == "42", result.stderr


def test_a_second_run_changes_nothing(tmp_path):
    archive = make_package(tmp_path / "pkg.zip")
    compile_package(archive)
    before = archive.read_bytes()
    assert compile_package(archive) == 0
    assert archive.read_bytes() == before


def test_old_packages_are_pruned_but_never_the_current_one(tmp_path):
    import os

    packages = []
    for i in range(5):
        p = tmp_path / f"{i:032x}-python3.11.zip"
        p.write_bytes(b"x")
        os.utime(p, (1000 + i, 1000 + i))
        packages.append(p)
    prune(tmp_path, keep=packages[0], newest=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in (packages[0], packages[3], packages[4]))
