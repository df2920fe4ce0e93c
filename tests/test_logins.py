"""Logins for the pages: `hydra user add` stores one, privately; `hydra up` makes a first admin login once."""

from __future__ import annotations

import json
import stat

import pytest
from click.testing import CliRunner

from hydra_assets import logins
from hydra_assets.cli import cli as main


def test_user_add_prints_a_generated_password_once_and_stores_it_privately(sqlite_db, hydra_home):
    runner = CliRunner()
    result = runner.invoke(main, ["user", "add", "alice", "--role", "expert"])
    assert result.exit_code == 0, result.output
    password = result.output.split("login for alice: password ")[1].split()[0]
    path = logins.credentials_path(hydra_home)
    assert json.loads(path.read_text()) == {"alice": password}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_user_add_takes_a_password_file_refuses_a_short_one_and_no_login_writes_none(sqlite_db, hydra_home, tmp_path):
    runner = CliRunner()
    short, good = tmp_path / "short", tmp_path / "good"
    short.write_text("abc\n")
    good.write_text("correct horse\n")
    refused = runner.invoke(main, ["user", "add", "bob", "--password-file", str(short)])
    assert refused.exit_code != 0 and "at least 8 characters" in refused.output
    assert runner.invoke(main, ["user", "add", "bob", "--password-file", str(good)]).exit_code == 0
    assert runner.invoke(main, ["user", "add", "carol", "--no-login"]).exit_code == 0
    assert logins.read_logins(logins.credentials_path(hydra_home)) == {"bob": "correct horse"}
    reset = runner.invoke(main, ["user", "password", "carol"])
    assert reset.exit_code == 0 and "login for carol: password " in reset.output
    assert runner.invoke(main, ["user", "password", "nobody"]).exit_code != 0


def test_first_admin_login_is_made_once_and_kept(sqlite_db, hydra_home):
    name, password = logins.ensure_first_admin(sqlite_db, hydra_home)
    assert logins.ensure_first_admin(sqlite_db, hydra_home) is None
    assert logins.read_logins(logins.credentials_path(hydra_home)) == {name: password}


def test_first_admin_refuses_to_log_in_a_non_admin_called_admin(sqlite_db, hydra_home):
    from hydra_assets import catalog

    sqlite_db.write(lambda s: catalog.add_user(s, "admin", role="viewer"), what="add user")
    with pytest.raises(logins.LoginError, match="hydra user add NAME --role admin"):
        logins.ensure_first_admin(sqlite_db, hydra_home)
