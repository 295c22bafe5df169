"""Sign-in and roles: argon2 hashes, lockout, session expiry, roles -> pages, the users CLI."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
import sqlalchemy as sa
from argon2 import PasswordHasher

from cxdash.cli.main import main
from cxdash.governance import auth
from cxdash.governance.auth import AuthError, UserError
from cxdash.store import audit
from cxdash.store.database import users_table

PASSWORD = "correct horse battery"


@pytest.fixture
def fast_hashing(monkeypatch):
    """Cheap argon2 parameters so the suite stays fast (the production ones are tested below)."""
    monkeypatch.setattr(auth, "_hasher", PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))


@pytest.fixture
def people(store, fast_hashing):
    auth.add_user(store, "ann", "agent", PASSWORD)
    auth.add_user(store, "bo", "executive", PASSWORD)
    return store


def _hash_of(store, name):
    with store.app_begin() as conn:
        return conn.execute(sa.select(users_table.c.password_hash).where(users_table.c.username == name)).scalar()


def test_production_hasher_is_argon2id_with_rfc9106_low_memory_parameters(duck):
    h = auth._hasher.hash("x" * 12)
    assert h.startswith("$argon2id$v=19$m=65536,t=3,p=4$")


def test_passwords_are_stored_only_as_salted_hashes(people):
    a, b = _hash_of(people, "ann"), _hash_of(people, "bo")
    assert a.startswith("$argon2id$") and PASSWORD not in a
    assert a != b  # same password, different salt
    with people.app_begin() as conn:
        everything = " ".join(str(v) for row in conn.execute(sa.select(users_table)) for v in row)
    assert PASSWORD not in everything


def test_a_right_password_signs_in_with_the_users_role(people):
    session = auth.authenticate(people, "ANN", PASSWORD)
    assert (session.username, session.role) == ("ann", "agent")
    log = audit.recent(people)
    assert log.iloc[0]["action"] == "sign_in" and log.iloc[0]["actor"] == "ann"


def test_unknown_user_and_wrong_password_get_the_same_answer(people):
    with pytest.raises(AuthError) as wrong:
        auth.authenticate(people, "ann", "nope nope nope")
    with pytest.raises(AuthError) as unknown:
        auth.authenticate(people, "zed-typed-a-password", "nope nope nope")
    assert str(wrong.value) == str(unknown.value) == auth.WRONG
    # A password typed into the user-name field must not end up in the audit log.
    assert "zed-typed-a-password" not in audit.recent(people).to_string()


def test_unknown_locked_and_wrong_password_sign_ins_read_the_same_and_cost_one_verification(people, monkeypatch):
    now = auth._now()
    auth.add_user(people, "cy", "ops", PASSWORD, actor="root")
    for _ in range(auth.MAX_FAILED_ATTEMPTS):
        with pytest.raises(AuthError):
            auth.authenticate(people, "cy", "bad password!", now=now)
    assert auth.get_user(people, "cy")["locked_until"] is not None
    calls: list[str] = []

    class CountingHasher:  # the real argon2 hasher, counting its verifications
        def __init__(self, real):
            self.real = real

        def verify(self, stored_hash, password):
            calls.append(stored_hash)
            return self.real.verify(stored_hash, password)

        def __getattr__(self, name):
            return getattr(self.real, name)

    monkeypatch.setattr(auth, "_hasher", CountingHasher(auth._hasher))
    answers, verifications = {}, {}
    for case, (user, password) in {
        "unknown user": ("nobody-here", "bad password!"),
        "wrong password": ("ann", "bad password!"),
        "locked, wrong password": ("cy", "bad password!"),
        "locked, right password": ("cy", PASSWORD),
    }.items():
        calls.clear()
        with pytest.raises(AuthError) as refused:
            auth.authenticate(people, user, password, now=now + timedelta(minutes=1))
        answers[case], verifications[case] = str(refused.value), len(calls)
    assert set(answers.values()) == {auth.WRONG}, answers
    assert "this account is locked" not in auth.WRONG
    # the same work on every path: one argon2 verification (a dummy hash where there is nothing to check)
    assert verifications == dict.fromkeys(answers, 1)
    # the audit log still tells them apart
    failed = audit.recent(people)
    reasons = [json.loads(d)["reason"] for d in failed.loc[failed["action"] == "sign_in_failed", "detail"].head(4)]
    assert sorted(reasons) == sorted(["unknown user", "wrong password", "locked", "locked"])


def test_five_failures_lock_the_account_for_fifteen_minutes(people):
    now = auth._now()
    for _ in range(auth.MAX_FAILED_ATTEMPTS - 1):
        with pytest.raises(AuthError, match="Wrong"):
            auth.authenticate(people, "ann", "bad password!", now=now)
    with pytest.raises(AuthError, match="locked after 5 failed sign-ins"):
        auth.authenticate(people, "ann", "bad password!", now=now)
    # Even the right password is refused while locked, and the lock is in the audit log.
    with pytest.raises(AuthError, match="locked"):
        auth.authenticate(people, "ann", PASSWORD, now=now + timedelta(minutes=14))
    assert "account_locked" in set(audit.recent(people)["action"])
    assert auth.get_user(people, "ann")["locked_until"] == now + timedelta(minutes=15)
    session = auth.authenticate(people, "ann", PASSWORD, now=now + timedelta(minutes=15, seconds=1))
    assert session.role == "agent"
    assert auth.get_user(people, "ann")["failed_attempts"] == 0


def test_a_success_resets_the_failure_count(people):
    for _ in range(auth.MAX_FAILED_ATTEMPTS - 1):
        with pytest.raises(AuthError):
            auth.authenticate(people, "ann", "bad password!")
    auth.authenticate(people, "ann", PASSWORD)
    with pytest.raises(AuthError, match="Wrong"):  # a fresh count: not locked by one more miss
        auth.authenticate(people, "ann", "bad password!")


def test_an_admin_can_unlock_early(people):
    for _ in range(auth.MAX_FAILED_ATTEMPTS):
        with pytest.raises(AuthError):
            auth.authenticate(people, "ann", "bad password!")
    auth.unlock(people, "ann", actor="root")
    assert auth.authenticate(people, "ann", PASSWORD).username == "ann"


def test_sessions_expire_when_idle_and_after_a_day(people, monkeypatch):
    s = auth.authenticate(people, "ann", PASSWORD)
    t0 = s.last_seen_at
    refreshed = auth.check_session(people, s, now=t0 + timedelta(hours=7, minutes=59))
    assert refreshed is not None and refreshed.last_seen_at == t0 + timedelta(hours=7, minutes=59)
    assert auth.check_session(people, s, now=t0 + timedelta(hours=8, seconds=1)) is None
    # Active all day long still ends after MAX_SESSION_HOURS.
    busy = refreshed
    for h in (6, 12, 18, 23.9):
        busy = auth.check_session(people, busy, now=t0 + timedelta(hours=h))
    assert busy is not None
    assert auth.check_session(people, busy, now=t0 + timedelta(hours=24, minutes=1)) is None
    monkeypatch.setenv("CXDASH_SESSION_IDLE_HOURS", "1")
    assert auth.check_session(people, s, now=t0 + timedelta(minutes=61)) is None


def test_disabling_ends_live_sessions_and_role_changes_apply_at_once(people):
    s = auth.authenticate(people, "ann", PASSWORD)
    auth.set_role(people, "ann", "ops", actor="root")
    assert auth.check_session(people, s).role == "ops"
    auth.set_disabled(people, "ann", True, actor="root")
    assert auth.check_session(people, s) is None
    with pytest.raises(AuthError, match="disabled"):
        auth.authenticate(people, "ann", PASSWORD)
    actions = list(audit.recent(people)["action"])
    assert "role_changed" in actions and "user_disabled" in actions


def test_bad_roles_names_and_short_passwords_are_refused(people):
    with pytest.raises(UserError, match="unknown role"):
        auth.add_user(people, "cy", "superuser", PASSWORD)
    with pytest.raises(UserError, match="at least 12"):
        auth.add_user(people, "cy", "ops", "short")
    with pytest.raises(UserError, match="not allowed"):
        auth.add_user(people, "cy'; DROP TABLE users; --", "ops", PASSWORD)
    with pytest.raises(UserError, match="already exists"):
        auth.add_user(people, "Ann", "ops", PASSWORD)
    with pytest.raises(UserError, match="no user"):
        auth.set_role(people, "nobody", "ops")


def test_no_password_given_means_a_generated_one(people):
    generated = auth.add_user(people, "cy", "ops")
    assert generated and len(generated) >= 20
    assert auth.authenticate(people, "cy", generated).role == "ops"
    assert auth.add_user(people, "dee", "ops", PASSWORD) is None


EXPECTED_PAGES = {
    "executive": {"overview.py", "executive.py"},
    "journey_owner": {"overview.py", "journeys.py"},
    "ops": {"overview.py", "upload.py", "data_health.py"},
    "agent": {"overview.py", "customer_card.py", "at_risk.py"},
}
ALL_PAGES = [
    "overview.py",
    "executive.py",
    "journeys.py",
    "at_risk.py",
    "customer_card.py",
    "model.py",
    "upload.py",
    "data_health.py",
    "admin.py",
]


@pytest.mark.parametrize("role", auth.ROLES)
def test_each_role_opens_exactly_its_pages(role):
    opened = {p for p in ALL_PAGES if auth.may_open(role, f"/some/where/pages/{p}")}
    assert opened == (set(ALL_PAGES) if role == "admin" else EXPECTED_PAGES[role])


def test_no_role_or_an_unknown_one_opens_nothing():
    assert not any(auth.may_open(r, p) for r in (None, "", "root", "Admin") for p in ALL_PAGES)


# ----------------------------------------------------------------------------- CLI
def _cli(capsys, url, *argv, stdin=None, monkeypatch=None):
    if stdin is not None:
        import io

        monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    code = main(["--db", url, *argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_users_add_set_role_disable_list(tmp_path, capsys, monkeypatch, fast_hashing):
    url = f"duckdb:///{tmp_path / 'u.duckdb'}"
    code, out, _ = _cli(capsys, url, "users", "add", "Eve", "--role", "ops")
    assert code == 0
    password = out.split("shown once, store it now): ")[1].strip()
    code, out, _ = _cli(
        capsys,
        url,
        "users",
        "add",
        "fay",
        "--role",
        "agent",
        "--password-stdin",
        stdin=PASSWORD + "\n",
        monkeypatch=monkeypatch,
    )
    assert code == 0 and "password" not in out.replace("--password", "")
    code, _, err = _cli(capsys, url, "users", "add", "eve", "--role", "ops")
    assert code == 1 and "already exists" in err
    assert _cli(capsys, url, "users", "set-role", "eve", "admin")[0] == 0
    assert _cli(capsys, url, "users", "disable", "fay")[0] == 0
    code, out, _ = _cli(capsys, url, "users", "list", "--json")
    users = {u["username"]: u for u in json.loads(out)}
    assert users["eve"]["role"] == "admin" and users["fay"]["disabled"] is True
    assert all("hash" not in k for u in users.values() for k in u)

    from cxdash.store.database import open_store

    s = open_store(url)
    assert auth.authenticate(s, "eve", password).role == "admin"
    with pytest.raises(AuthError, match="disabled"):
        auth.authenticate(s, "fay", PASSWORD)
    actors = set(audit.recent(s)["actor"])
    assert any(a.startswith("cli") for a in actors)
    s.dispose()


def test_cli_bootstrap_creates_the_first_admin_once(tmp_path, capsys, fast_hashing):
    url = f"duckdb:///{tmp_path / 'b.duckdb'}"
    code, out, _ = _cli(capsys, url, "users", "bootstrap", "--demo-users")
    assert code == 0
    created = dict(line.split(" user ")[1].split(" with password ") for line in out.strip().splitlines())
    assert set(created) == {"'admin'", "'exec'", "'journeys'", "'ops'", "'agent'"}
    code, out, _ = _cli(capsys, url, "users", "bootstrap", "--demo-users")
    assert "already set up" in out  # no second password is ever printed
    from cxdash.store.database import open_store

    s = open_store(url)
    pw = created["'agent'"].split()[0]
    assert auth.authenticate(s, "agent", pw).role == "agent"
    s.dispose()


def test_while_a_load_holds_the_store_a_session_keeps_only_its_time_limits():
    t0 = auth._now()
    s = auth.Session("ann", "agent", t0, t0)
    assert auth.check_session_times(s, now=t0 + timedelta(hours=1)).last_seen_at == t0 + timedelta(hours=1)
    assert auth.check_session_times(s, now=t0 + timedelta(hours=8, seconds=1)) is None
    assert auth.check_session_times(None) is None
