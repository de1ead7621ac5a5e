"""The CLI where issue #7 found it unhelpful: options named in errors, unknown webhooks refused, status -h,
and a plain ``status`` after ``make demo`` pointing at the demo's archive."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from collectors import archive
from collectors.cli import cli
from tests.seed import ALPHA, BETA, GAMMA


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args), env={"MOEGO_API_KEY": None, "MOEGO_BASE_URL": None,
                                                   "MOEGO_MONITOR_DB": None})


@pytest.mark.parametrize("option", ["--since", "--until"])
def test_a_bad_date_names_its_option(option: str, seeded) -> None:
    dates = {"--since": "2026-11-01", "--until": "2026-11-02", option: "2026-13-45"}
    result = invoke("export", "--since", dates["--since"], "--until", dates["--until"], "--db", str(seeded.path))
    assert result.exit_code == 2
    assert result.output.splitlines()[-1] == f"Error: Invalid value for '{option}': not a date: '2026-13-45'"


def test_an_unknown_webhook_is_refused_with_the_known_ones(seeded, tmp_path: Path) -> None:
    out = tmp_path / "x.csv"
    result = invoke("export", "--since", "2026-11-01", "--until", "2026-11-30", "--webhook", "whk_nope",
                    "--db", str(seeded.path), "--out", str(out))
    assert result.exit_code == 1
    assert result.output.splitlines() == [
        f"Error: no webhook whk_nope in the archive at {seeded.path} (known: {ALPHA}, {BETA}, {GAMMA}): check --webhook"]
    assert not out.exists()


def test_an_export_that_matches_nothing_says_so(seeded, tmp_path: Path) -> None:
    result = invoke("export", "--since", "2001-01-01", "--until", "2001-01-02", "--db", str(seeded.path),
                    "--out", str(tmp_path / "x.csv"))
    assert result.exit_code == 0
    assert result.output.splitlines()[0].startswith("exported 0 deliveries to ")
    assert result.output.splitlines()[1].startswith("nothing matched: no archived delivery in that range")


def test_status_help_lists_only_what_status_uses() -> None:
    result = invoke("status", "-h")
    assert result.exit_code == 0
    for unused in ("--api-key", "--base-url", "--timeout"):
        assert unused not in result.output
    assert "--db" in result.output and "--json" in result.output


def test_status_after_the_demo_points_at_the_demos_archive(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    archive.ensure_db_shape(archive.connect(tmp_path / "data" / "demo.db"))
    result = invoke("status")
    assert result.exit_code == 1
    assert result.output.splitlines() == [
        "Error: no archive at data/moego-monitor.db; the demo's archive is data/demo.db: use --db data/demo.db "
        "(or MOEGO_MONITOR_DB=data/demo.db), or run 'moego-monitor collect' to start your own"]
    assert invoke("status", "--db", "data/demo.db").exit_code == 2  # found: nothing archived yet, so exit 2
