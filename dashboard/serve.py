"""Serve the dashboard: ``streamlit run dashboard/app.py`` in this process, warmed up and safe by default.

``moego-monitor dashboard [STREAMLIT FLAGS]`` (or ``python -m dashboard``) is the same server as ``streamlit run
dashboard/app.py`` with two differences:

- **Warmed up.** Streamlit runs an app's script only when the first browser connects, so the first page after a
  start used to wait for pandas, pyarrow and the dashboard's modules to import (~0.3 s of a ~2 s first load;
  bench/README.md). They are imported before the server starts listening (:func:`warm_imports`); no page runs
  and nothing reads the archive until a browser asks.
- **Loopback unless you say otherwise.** A Streamlit option nobody set (no flag, no ``STREAMLIT_*`` variable, no
  ``config.toml``, the project's or ``~/.streamlit/``) gets this project's value: ``server.address`` 127.0.0.1
  (Streamlit's own default listens on every interface), no usage statistics, the minimal toolbar. Anything you
  set wins: ``--server.address 0.0.0.0`` exposes the console, which then asks who you are (README: "Access").
"""

from __future__ import annotations

import importlib
import logging
import os
import pkgutil
import sys
import time
import tomllib
from pathlib import Path
from typing import Sequence

__all__ = ["APP", "DEFAULTS", "warm_imports", "streamlit_args", "main"]

#: The Streamlit script.
APP = Path(__file__).resolve().with_name("app.py")

#: Options this project sets when nobody else did.
DEFAULTS: dict[str, str] = {
    "server.address": "127.0.0.1",
    "browser.gatherUsageStats": "false",
    "client.toolbarMode": "minimal",
}

#: Modules a first page run imports besides the dashboard's own: what Streamlit needs for frames, charts and icons
#: (found by ``tests/dashboard/test_serve.py``, which runs the Overview after the warm-up and lists what it imported).
_LIBRARIES = ("numpy", "pandas", "pyarrow", "pyarrow.pandas_compat", "pyarrow.vendored.version", "streamlit.emojis",
              "streamlit.material_icon_names", "streamlit.runtime.scriptrunner.magic_funcs")
#: Streamlit scripts (pages and the router): run by Streamlit, never imported.
_SCRIPTS = frozenset({"dashboard.app", "dashboard.__main__", "dashboard.serve"})


def warm_imports() -> float:
    """Import the libraries and every module of the dashboard package (not its page scripts); seconds spent.

    Only a head start: a module that fails to import here is skipped, and the page that needs it says why."""
    started = time.perf_counter()
    # Decorating a function with st.cache_data outside a running server logs a warning per function; the caches
    # themselves are made on first use, inside the server (``DataCaches.get_cache``).
    import streamlit.runtime.caching.cache_data_api  # noqa: F401  (its logger gets Streamlit's level on import)

    caching_log = logging.getLogger("streamlit.runtime.caching.cache_data_api")
    level = caching_log.level
    caching_log.setLevel(logging.ERROR)
    try:
        import dashboard

        names = [*_LIBRARIES, *(module.name for module in pkgutil.iter_modules(dashboard.__path__, "dashboard.")
                                if module.name not in _SCRIPTS and not module.ispkg)]
        for name in names:
            try:
                importlib.import_module(name)
            except Exception:  # noqa: BLE001 - the page run imports it again and shows what is wrong
                continue
    finally:
        caching_log.setLevel(level)
    return time.perf_counter() - started


def _given(option: str, args: Sequence[str]) -> bool:
    """Whether ``args`` (``--section.name value`` or ``--section.name=value``) or a ``STREAMLIT_*`` variable sets ``option``."""
    flag = f"--{option}"
    if any(arg == flag or arg.startswith(flag + "=") for arg in args):
        return True
    section, name = option.split(".")
    snake = "".join(f"_{c}" if c.isupper() else c for c in name).upper()
    return f"STREAMLIT_{section.upper()}_{snake}" in os.environ


def _in_config_files(option: str) -> bool:
    """Whether a ``config.toml`` Streamlit reads sets ``option``: ``~/.streamlit/``, the current folder's
    ``.streamlit/`` and the one beside the app (``dashboard/.streamlit/``). An unreadable file counts as setting
    it: Streamlit then says what is wrong with it, and this adds nothing on top."""
    from streamlit import config

    section, name = option.split(".")
    files = [*config.get_config_files("config.toml"), str(APP.parent / ".streamlit" / "config.toml")]
    for path in files:
        try:
            with open(path, "rb") as handle:
                parsed = tomllib.load(handle)
        except FileNotFoundError:
            continue
        except (OSError, tomllib.TOMLDecodeError):
            return True
        if name in (parsed.get(section) or {}):
            return True
    return False


def streamlit_args(args: Sequence[str]) -> list[str]:
    """``streamlit run`` arguments: the app, ``args``, then :data:`DEFAULTS` nobody set (flag, variable or config file)."""
    out = ["run", str(APP), *args]
    for option, value in DEFAULTS.items():
        if not _given(option, args) and not _in_config_files(option):
            out += [f"--{option}", value]
    return out


def main(args: Sequence[str] | None = None) -> int:
    """Warm up, then run Streamlit's own command line with :func:`streamlit_args`; its exit status."""
    args = list(sys.argv[1:] if args is None else args)
    warm_imports()
    from streamlit.web import cli

    sys.argv = ["streamlit", *streamlit_args(args)]
    try:
        cli.main(prog_name="streamlit")
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return 0
