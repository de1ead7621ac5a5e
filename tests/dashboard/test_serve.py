"""``moego-monitor dashboard`` (``python -m dashboard``): the console as ``streamlit run dashboard/app.py`` serves it,
warmed up, and on loopback wherever it is started unless the user says otherwise.

What a user checks: started from any folder (no project config there), the console answers on 127.0.0.1 and on
no other interface; ``--server.address 0.0.0.0`` or a config file of their own exposes it as they asked; the
first page after a start does not wait for the dashboard's libraries to import.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from datetime import datetime, timezone
from pathlib import Path

import httpx
import pytest

from dashboard import serve

from tests.conftest import REPO, free_port
from tests.seed import seed

_LISTEN = "0A"


def _listening(port: int) -> set[str]:
    """The IPv4 addresses (hex, as in /proc/net/tcp) with a socket listening on ``port``."""
    out = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        address, hex_port = local.split(":")
        if state == _LISTEN and int(hex_port, 16) == port:
            out.add(address)
    return out


def _start(args: list[str], cwd: Path, env: dict[str, str]) -> tuple[subprocess.Popen, int]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "collectors", "dashboard", "--server.headless", "true",
                             "--server.port", str(port), *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()[0]
        try:
            if httpx.get(f"http://127.0.0.1:{port}/_stcore/health", timeout=2).status_code == 200:
                return proc, port
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise AssertionError(f"the dashboard did not answer: {proc.communicate()[0]}")


def _stop(proc: subprocess.Popen) -> str:
    proc.terminate()
    try:
        return proc.communicate(timeout=15)[0]
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.communicate()[0]


@pytest.fixture
def elsewhere(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A folder with no Streamlit config, a home without one either, and an archive to serve."""
    folder, home = tmp_path / "ops", tmp_path / "home"
    folder.mkdir()
    home.mkdir()
    db = tmp_path / "archive.db"
    seed(db, datetime.now(timezone.utc))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MOEGO_", "STREAMLIT_"))}
    env.update(HOME=str(home), MOEGO_MONITOR_DB=str(db), PYTHONPATH=str(REPO))
    return folder, env


def test_started_from_any_folder_it_serves_the_console_on_loopback_only(elsewhere) -> None:
    folder, env = elsewhere
    proc, port = _start([], folder, env)
    try:
        assert _listening(port) == {"0100007F"}  # 127.0.0.1, nothing else
        page = httpx.get(f"http://127.0.0.1:{port}/", timeout=10)
        assert page.status_code == 200 and "<noscript>" in page.text  # Streamlit's page shell
    finally:
        output = _stop(proc)
    assert "URL: http://127.0.0.1:" in output and "Traceback" not in output and "WARNING" not in output, output


def test_an_address_the_user_gives_wins(elsewhere) -> None:
    folder, env = elsewhere
    proc, port = _start(["--server.address", "0.0.0.0"], folder, env)
    try:
        assert _listening(port) == {"00000000"}  # every interface: the console then asks who you are
    finally:
        _stop(proc)


def test_defaults_apply_only_to_options_nobody_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home, project = tmp_path / "home", tmp_path / "project"
    for folder in (home, project):
        (folder / ".streamlit").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(project)
    for name in [n for n in os.environ if n.startswith("STREAMLIT_")]:
        monkeypatch.delenv(name)

    def added(*args: str) -> dict[str, str]:
        out = serve.streamlit_args(list(args))
        assert out[:2] == ["run", str(serve.APP)] and out[2 : 2 + len(args)] == list(args)
        extra = out[2 + len(args):]
        return dict(zip(extra[::2], extra[1::2]))

    everything = {"--server.address": "127.0.0.1", "--browser.gatherUsageStats": "false",
                  "--client.toolbarMode": "minimal"}
    assert added() == everything
    assert added("--server.address", "10.0.0.5") == {k: v for k, v in everything.items() if k != "--server.address"}
    assert added("--server.address=::1") == {k: v for k, v in everything.items() if k != "--server.address"}
    monkeypatch.setenv("STREAMLIT_SERVER_ADDRESS", "0.0.0.0")
    assert "--server.address" not in added()
    monkeypatch.delenv("STREAMLIT_SERVER_ADDRESS")
    (project / ".streamlit" / "config.toml").write_text('[server]\naddress = "0.0.0.0"\n')
    assert "--server.address" not in added()
    (project / ".streamlit" / "config.toml").unlink()
    (home / ".streamlit" / "config.toml").write_text('[client]\ntoolbarMode = "developer"\n')
    assert added() == {k: v for k, v in everything.items() if k != "--client.toolbarMode"}


FIRST_RUN = textwrap.dedent("""
    import os, sys
    from dashboard.serve import warm_imports
    warm_imports()
    from streamlit.testing.v1 import AppTest
    before = set(sys.modules)
    at = AppTest.from_file(os.path.join(sys.argv[1], "dashboard", "app.py"), default_timeout=60)
    at.run()
    assert not at.exception, at.exception
    assert at.metric, "the Overview drew no tile"
    print("\\n".join(sorted(set(sys.modules) - before)))
""")


def test_the_first_page_after_a_start_finds_its_libraries_imported(elsewhere) -> None:
    """After the warm-up, drawing the Overview imports nothing of pandas, pyarrow, numpy, the dashboard, the archive's
    code or Streamlit's icon and emoji tables (what a first page used to wait ~0.3 s for)."""
    _, env = elsewhere
    done = subprocess.run([sys.executable, "-c", FIRST_RUN, str(REPO)], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    imported = done.stdout.split()
    heavy = ("numpy", "pandas", "pyarrow", "dashboard", "collectors", "streamlit.emojis", "streamlit.material_icon_names")
    assert not [name for name in imported if name.startswith(heavy)], imported
