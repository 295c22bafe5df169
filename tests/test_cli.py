"""The CLI contract, run as a real subprocess the way a scheduled job runs it."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from cxdash.cli import main as cli_main
from cxdash.cli.main import main

REQUIRED_SOURCE_KEYS = {"name", "kind", "department", "rows", "customers", "loaded_at"}


def run(*args: str, db: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cxdash", "--db", db, *args], capture_output=True, text=True, timeout=300
    )


def test_demo_then_sources_json_lists_every_department(tmp_path):
    db = f"duckdb:///{tmp_path / 'cli.duckdb'}"
    done = run("demo", "--no-train", "--customers", "400", "--seed", "3", "--out", str(tmp_path / "x"), db=db)
    assert done.returncode == 0, done.stderr
    assert "400 customers" in done.stdout
    listed = run("sources", "--json", db=db)
    assert listed.returncode == 0, listed.stderr
    sources = json.loads(listed.stdout)
    assert {s["name"] for s in sources} == {"crm", "web", "marketing", "helpdesk", "billing", "subscriptions", "sales"}
    for s in sources:
        assert s.keys() >= REQUIRED_SOURCE_KEYS
        assert s["rows"] > 0 and s["customers"] > 0 and s["loaded_at"]
    assert next(s for s in sources if s["name"] == "crm")["customers"] == 400
    again = run("demo", "--if-empty", "--customers", "400", "--out", str(tmp_path / "x"), db=db)
    assert again.returncode == 0 and "already holds data" in again.stdout


def test_ingest_of_an_invalid_file_exits_non_zero_with_one_line_and_loads_nothing(tmp_path, capsys):
    db = f"duckdb:///{tmp_path / 'cli.duckdb'}"
    bad = tmp_path / "tickets.csv"
    bad.write_text("Ticket #,Email,Created\nT1,a@example.com,yesterday\nT2,b@example.com,2024-01-01\n")
    code = main(["--db", db, "ingest", str(bad), "--source", "helpdesk", "--kind", "tickets"])
    err = capsys.readouterr().err.strip()
    assert code == 1
    assert len(err.splitlines()) == 1 and "1 of 2 rows are invalid" in err and "Created" in err
    assert main(["--db", db, "sources", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []
    # With --reject-invalid the valid row loads and the command succeeds.
    assert main(["--db", db, "ingest", str(bad), "--source", "helpdesk", "--kind", "tickets", "--reject-invalid"]) == 0
    assert "loaded 1, rejected 1" in capsys.readouterr().out


@pytest.mark.parametrize("args", [["ingest", "/no/such/file.csv", "--source", "x"], ["ingest", "--source", "x"]])
def test_bad_invocations_fail_cleanly(tmp_path, args):
    done = run(*args, db=f"duckdb:///{tmp_path / 'c.duckdb'}")
    assert done.returncode != 0
    assert "Traceback" not in done.stderr


def test_every_command_has_its_function_and_help_imports_no_command_module():
    """``main`` imports a command's module only when that command runs (cxdash.cli.main.COMMAND_MODULES):
    every subcommand the parser offers must resolve to a ``cmd_<name>``, and ``--help`` must stay light."""
    parser = cli_main.build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert set(sub.choices) == set(cli_main.COMMAND_MODULES)
    for command in sub.choices:
        assert callable(cli_main.command_function(command)), command
    probe = "import sys, cxdash.cli.main; print(sorted(m for m in sys.modules if m.startswith(('cxdash.', 'pandas'))))"
    command = [sys.executable, "-c", probe]
    loaded = subprocess.run(command, capture_output=True, text=True, timeout=60, check=True)
    assert json.loads(loaded.stdout.replace("'", '"')) == ["cxdash.cli", "cxdash.cli.arguments", "cxdash.cli.main"]


def test_the_ingest_command_does_not_import_scikit_learn():
    """``ingest`` trains nothing: its module must not pull in scikit-learn (about half a second of
    start-up), while ``train``'s module does (so the probe can tell the two apart)."""
    probe = (
        "import sys; from cxdash.cli.main import command_function; command_function({!r}); "
        "print(any(m == 'sklearn' or m.startswith('sklearn.') for m in sys.modules))"
    )
    seen = {}
    for command in ("ingest", "train"):
        done = subprocess.run(
            [sys.executable, "-c", probe.format(command)], capture_output=True, text=True, timeout=120, check=True
        )
        seen[command] = done.stdout.strip()
    assert seen == {"ingest": "False", "train": "True"}
