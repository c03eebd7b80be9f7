"""The launcher's prerequisite checks: what is wrong and what to do, never a stack trace."""

from __future__ import annotations

import importlib.util
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("cloud", ROOT / "localstack" / "cloud.py")
assert spec and spec.loader
cloud = importlib.util.module_from_spec(spec)
sys.modules["cloud"] = cloud  # dataclasses look their module up while the class is built
spec.loader.exec_module(cloud)


def test_a_missing_python_says_what_to_install(monkeypatch, tmp_path):
    monkeypatch.setenv("PYENV_ROOT", str(tmp_path))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(cloud.Problem, match=r"Python 3\.99 was not found.*pyenv install 3\.99"):
        cloud.find_python("3.99")


def test_a_missing_java_says_what_to_install(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(cloud.Problem, match="openjdk-17"):
        cloud.check_java()


@pytest.mark.enable_socket
def test_a_busy_port_names_the_port_and_the_way_out():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        with pytest.raises(cloud.Problem, match=rf"Port {port} .* in use.*make down"):
            cloud.check_port_free(port, "LocalStack")


def test_the_command_line_prints_the_problem_without_a_traceback(tmp_path):
    env = {"PATH": str(tmp_path), "PYENV_ROOT": str(tmp_path), "HERALD_STATE_DIR": str(tmp_path / "state")}
    result = subprocess.run(
        [sys.executable, str(ROOT / "localstack" / "cloud.py"), "install"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert result.returncode == 1
    assert "error: Python 3.13 was not found" in result.stderr and "Traceback" not in result.stderr


def test_an_unchanged_install_is_recognised_by_its_fingerprint(tmp_path):
    a = cloud._fingerprint("x", ROOT / "localstack" / "constraints.txt")
    assert a == cloud._fingerprint("x", ROOT / "localstack" / "constraints.txt")
    assert a != cloud._fingerprint("y", ROOT / "localstack" / "constraints.txt")


def test_a_second_launcher_waits_for_the_first_instead_of_racing_it(tmp_path, capsys):
    import time

    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, sys, time\n"
            f"h = open({str(tmp_path / 'cloud.lock')!r}, 'w'); fcntl.flock(h, fcntl.LOCK_EX)\n"
            "print('locked', flush=True); time.sleep(1.0)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
    started = time.monotonic()
    with cloud.exclusive(tmp_path):
        waited = time.monotonic() - started
    holder.wait(timeout=10)
    assert waited > 0.5
    assert "waiting for it" in capsys.readouterr().out
    with cloud.exclusive(tmp_path):  # free again: no wait, no message
        pass
    assert "waiting" not in capsys.readouterr().out
