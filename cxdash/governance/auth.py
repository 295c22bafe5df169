"""Who may sign in, as what, and which pages each role may open. No Streamlit here: the UI
(``cxdash.ui.auth``) and the CLI (``python -m cxdash users ...``) call these functions.

* Passwords are stored only as argon2id hashes (``argon2-cffi``: salted, memory-hard); a hash
  made with weaker parameters is upgraded at the next sign-in.
* ``MAX_FAILED_ATTEMPTS`` wrong passwords in a row lock the account for ``LOCK_MINUTES``; an
  admin can unlock it earlier. An unknown user name, a locked account and a wrong password get the
  same message and cost the same time (the audit log keeps the real reason).
* A session ends after ``CXDASH_SESSION_IDLE_HOURS`` (default 8) without activity, or
  ``MAX_SESSION_HOURS`` after sign-in, and at once when the account is disabled; a role change
  applies at the next page run.
* There is no default password: ``add_user`` without a password generates one and returns it
  for the caller to show once.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from cxdash.store import audit
from cxdash.store.database import Store, users_table

__all__ = [
    "LOCK_MINUTES",
    "MAX_FAILED_ATTEMPTS",
    "ROLES",
    "ROLE_PAGES",
    "AuthError",
    "Session",
    "UserError",
    "add_user",
    "authenticate",
    "check_session",
    "check_session_times",
    "generate_password",
    "get_user",
    "list_users",
    "may_open",
    "reset_password",
    "set_disabled",
    "set_role",
    "unlock",
]

log = logging.getLogger(__name__)

ROLES: tuple[str, ...] = ("executive", "journey_owner", "ops", "agent", "admin")
ALL_PAGES = "*"
# Page files (in pages/) each role may open. The admin opens every page, including admin.py.
ROLE_PAGES: dict[str, frozenset[str] | str] = {
    "executive": frozenset({"overview.py", "executive.py"}),  # shared KPIs: aggregates only
    "journey_owner": frozenset({"overview.py", "journeys.py"}),
    "ops": frozenset({"overview.py", "upload.py", "data_health.py"}),
    "agent": frozenset({"overview.py", "customer_card.py", "at_risk.py"}),
    "admin": ALL_PAGES,
}
ROLE_LABELS = {
    "executive": "Executive (shared KPIs, aggregates only)",
    "journey_owner": "Journey owner (journeys, friction, drill-down)",
    "ops": "Ops (uploads, data health)",
    "agent": "Agent (customer card, at-risk list)",
    "admin": "Admin (users, roles, erasure, everything)",
}

MAX_FAILED_ATTEMPTS = 5
LOCK_MINUTES = 15
DEFAULT_IDLE_HOURS = 8.0
MAX_SESSION_HOURS = 24.0
MIN_PASSWORD_LENGTH = 12
_USERNAME = re.compile(r"^[a-z0-9][a-z0-9._@+-]{0,99}$")

_hasher = PasswordHasher()  # argon2id with the library's RFC 9106 defaults
_dummy_hash: str | None = None


class UserError(ValueError):
    """A user-management request that cannot be carried out (unknown user, bad role...)."""


class AuthError(PermissionError):
    """Sign-in refused; the message is safe to show on the sign-in form."""


@dataclass(frozen=True)
class Session:
    """A signed-in person. Kept in the UI's session state (server side), checked every page run."""

    username: str
    role: str
    signed_in_at: datetime
    last_seen_at: datetime
    method: str = "password"  # or "oidc"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Session:
        return cls(**data)


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def idle_timeout() -> timedelta:
    raw = os.environ.get("CXDASH_SESSION_IDLE_HOURS", "").strip()
    try:
        hours = float(raw) if raw else DEFAULT_IDLE_HOURS
    except ValueError:
        hours = DEFAULT_IDLE_HOURS
    return timedelta(hours=hours)


# ----------------------------------------------------------------------------- roles -> pages
def may_open(role: str | None, page_file: str | Path) -> bool:
    """Whether ``role`` may open the page file (``pages/journeys.py`` or just ``journeys.py``)."""
    allowed = ROLE_PAGES.get(role or "")
    if allowed is None:
        return False
    return allowed == ALL_PAGES or Path(page_file).name in allowed


def check_role(role: str) -> str:
    if role not in ROLES:
        raise UserError(f"unknown role {role!r}; choose one of {', '.join(ROLES)}")
    return role


# ----------------------------------------------------------------------------- passwords
def generate_password() -> str:
    """A random password of 20 URL-safe characters (about 120 bits)."""
    return secrets.token_urlsafe(15)


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise UserError(f"a password needs at least {MIN_PASSWORD_LENGTH} characters")


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def _verify(stored_hash: str | None, password: str) -> bool:
    global _dummy_hash
    if not stored_hash:
        # Same work as a real check, so a missing user cannot be told apart by timing.
        _dummy_hash = _dummy_hash or _hasher.hash(secrets.token_hex(16))
        stored_hash = _dummy_hash
        password = password + "\0never"
    try:
        return _hasher.verify(stored_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


# ----------------------------------------------------------------------------- user management
def _norm_name(username: str) -> str:
    name = (username or "").strip().lower()
    if not _USERNAME.match(name):
        raise UserError(
            f"user name {username!r} is not allowed: use letters, digits and . _ @ + - (up to 100 characters)"
        )
    return name


def get_user(store: Store, username: str) -> dict | None:
    try:
        name = _norm_name(username)
    except UserError:
        return None
    with store.app_begin() as conn:
        row = conn.execute(sa.select(users_table).where(users_table.c.username == name)).mappings().first()
    return dict(row) if row else None


def _require_user(store: Store, username: str) -> dict:
    user = get_user(store, username)
    if user is None:
        raise UserError(f"no user {username!r}; `python -m cxdash users list` shows who exists")
    return user


def add_user(
    store: Store, username: str, role: str, password: str | None = None, *, actor: str = "system", sso: bool = False
) -> str | None:
    """Create a user. Returns the password when one was generated (show it once), else None.
    ``sso`` creates an account that signs in only through single sign-on (no password)."""
    name, role = _norm_name(username), check_role(role)
    generated = None
    if sso:
        stored = None
    else:
        if password is None:
            password = generated = generate_password()
        _check_password(password)
        stored = hash_password(password)
    now = _now()
    with store.app_begin() as conn:
        if conn.execute(sa.select(users_table.c.username).where(users_table.c.username == name)).first():
            raise UserError(f"user {name!r} already exists; use `users set-role` or `users reset-password`")
        conn.execute(
            users_table.insert().values(
                username=name,
                role=role,
                password_hash=stored,
                disabled=False,
                failed_attempts=0,
                locked_until=None,
                created_at=now,
                updated_at=now,
                last_sign_in_at=None,
            )
        )
    audit.record(store, actor, "user_added", {"user": name, "role": role, "sso": sso})
    return generated


def _update(store: Store, username: str, **values) -> dict:
    user = _require_user(store, username)
    with store.app_begin() as conn:
        conn.execute(
            users_table.update().where(users_table.c.username == user["username"]).values(updated_at=_now(), **values)
        )
    return user


def set_role(store: Store, username: str, role: str, *, actor: str = "system") -> None:
    role = check_role(role)
    user = _update(store, username, role=role)
    audit.record(store, actor, "role_changed", {"user": user["username"], "from": user["role"], "to": role})


def set_disabled(store: Store, username: str, disabled: bool = True, *, actor: str = "system") -> None:
    user = _update(store, username, disabled=disabled)
    audit.record(store, actor, "user_disabled" if disabled else "user_enabled", {"user": user["username"]})


def unlock(store: Store, username: str, *, actor: str = "system") -> None:
    user = _update(store, username, failed_attempts=0, locked_until=None)
    audit.record(store, actor, "user_unlocked", {"user": user["username"]})


def reset_password(store: Store, username: str, password: str | None = None, *, actor: str = "system") -> str | None:
    """Set a new password (generated and returned when none is given); unlocks the account."""
    generated = None
    if password is None:
        password = generated = generate_password()
    _check_password(password)
    user = _update(store, username, password_hash=hash_password(password), failed_attempts=0, locked_until=None)
    audit.record(store, actor, "password_reset", {"user": user["username"]})
    return generated


def list_users(store: Store) -> pd.DataFrame:
    """Out: ``username, role, disabled, locked_until, failed_attempts, last_sign_in_at, created_at``
    (never the hashes)."""
    t = users_table
    cols = [
        t.c.username,
        t.c.role,
        t.c.disabled,
        t.c.locked_until,
        t.c.failed_attempts,
        t.c.last_sign_in_at,
        t.c.created_at,
    ]
    with store.app_begin() as conn:
        rows = conn.execute(sa.select(*cols).order_by(t.c.username)).fetchall()
    return pd.DataFrame([tuple(r) for r in rows], columns=[c.name for c in cols])


def has_admin(store: Store) -> bool:
    with store.app_begin() as conn:
        q = (
            sa.select(sa.func.count())
            .select_from(users_table)
            .where(users_table.c.role == "admin", users_table.c.disabled.is_(False))
        )
        return bool(conn.execute(q).scalar())


# ----------------------------------------------------------------------------- sign-in
# One answer for every refusal that does not need the right password: an unknown user name, a wrong
# password, a locked account and an account without a password (single sign-on) all read the same,
# so the form cannot be used to find out which user names exist. The audit log keeps the real reason.
WRONG = (
    f"Wrong user name or password, or the account is locked after {MAX_FAILED_ATTEMPTS} failed sign-ins "
    f"(it opens again after {LOCK_MINUTES} minutes; an admin can unlock it sooner)."
)


def authenticate(store: Store, username: str, password: str, *, now: datetime | None = None) -> Session:
    """Check a user name and password; return a fresh session or raise ``AuthError``.

    Every outcome is audited with its true reason (``sign_in_failed`` with ``reason``: unknown user,
    locked, single sign-on account, wrong password, disabled). The message is ``WRONG`` for all of
    them except "disabled", which is said only to someone who gave the right password. Each refusal
    before the password check does one argon2 verification of a dummy hash, so unknown, locked and
    wrong-password answers take the same time (one verification each). A locked account is refused
    whatever the password.
    """
    now = now or _now()
    user = get_user(store, username)
    if user is None:
        _verify(None, password or "")
        audit.record(store, "(unknown user)", "sign_in_failed", {"reason": "unknown user"})
        raise AuthError(WRONG)
    name = user["username"]
    if user["locked_until"] is not None and user["locked_until"] > now:
        _verify(None, password or "")  # the time of a real check, and its result ignored
        minutes = max(1, int((user["locked_until"] - now).total_seconds() // 60) + 1)
        audit.record(store, name, "sign_in_failed", {"reason": "locked", "minutes_left": minutes})
        raise AuthError(WRONG)
    if user["password_hash"] is None:
        _verify(None, password or "")
        audit.record(store, name, "sign_in_failed", {"reason": "single sign-on account"})
        raise AuthError(WRONG)
    if not _verify(user["password_hash"], password or ""):
        failed = int(user["failed_attempts"] or 0) + 1
        locked_until = now + timedelta(minutes=LOCK_MINUTES) if failed >= MAX_FAILED_ATTEMPTS else None
        with store.app_begin() as conn:
            conn.execute(
                users_table.update()
                .where(users_table.c.username == name)
                .values(failed_attempts=0 if locked_until else failed, locked_until=locked_until)
            )
        audit.record(store, name, "sign_in_failed", {"reason": "wrong password", "attempt": failed})
        if locked_until:
            audit.record(store, name, "account_locked", {"minutes": LOCK_MINUTES})
        raise AuthError(WRONG)
    if user["disabled"]:
        audit.record(store, name, "sign_in_failed", {"reason": "disabled"})
        raise AuthError("This account is disabled. Ask an admin.")
    values = {"failed_attempts": 0, "locked_until": None, "last_sign_in_at": now}
    if _hasher.check_needs_rehash(user["password_hash"]):
        values["password_hash"] = hash_password(password)
    with store.app_begin() as conn:
        conn.execute(users_table.update().where(users_table.c.username == name).values(**values))
    audit.record(store, name, "sign_in", {"method": "password"})
    return Session(name, user["role"], now, now)


def sso_session(store: Store, email: str, *, now: datetime | None = None) -> Session:
    """A session for someone the identity provider signed in: their role comes from the users
    table (user name = their email, lower-cased). Raises ``AuthError`` when they have none."""
    now = now or _now()
    user = get_user(store, email or "")
    if user is None or user["disabled"]:
        audit.record(
            store,
            "(unknown user)" if user is None else user["username"],
            "sign_in_failed",
            {"reason": "no enabled account for this single sign-on identity", "method": "oidc"},
        )
        raise AuthError(
            "You are signed in with single sign-on, but no cxdash role is assigned to you yet. "
            "Ask an admin to add you (user name = your email)."
        )
    with store.app_begin() as conn:
        conn.execute(users_table.update().where(users_table.c.username == user["username"]).values(last_sign_in_at=now))
    audit.record(store, user["username"], "sign_in", {"method": "oidc"})
    return Session(user["username"], user["role"], now, now, method="oidc")


def check_session_times(session: Session | None, *, now: datetime | None = None) -> Session | None:
    """The idle and absolute time limits only (used while a data load holds the store)."""
    if session is None:
        return None
    now = now or _now()
    if now - session.last_seen_at > idle_timeout():
        return None
    if now - session.signed_in_at > timedelta(hours=MAX_SESSION_HOURS):
        return None
    return replace(session, last_seen_at=now)


def check_session(store: Store, session: Session | None, *, now: datetime | None = None) -> Session | None:
    """The session brought up to date (role from the users table, activity time), or None when
    it expired or the account was disabled, locked or removed."""
    session = check_session_times(session, now=now)
    if session is None:
        return None
    now = session.last_seen_at
    user = get_user(store, session.username)
    if user is None or user["disabled"] or (user["locked_until"] is not None and user["locked_until"] > now):
        return None
    return replace(session, role=user["role"], last_seen_at=now)
