"""The installation's secret salt, the salted identifier hashes, and the erasure suppression list.

``identifier_hash`` is an HMAC-SHA256 keyed on a secret salt that lives outside the repository
(``CXDASH_SECRET_SALT``, ``.streamlit/secrets.toml`` or a generated file under ``data/``), so the
audit log and the suppression list never hold an identifier and cannot be reversed by hashing
guesses without the salt. The load (cxdash.ingest) reads the suppression list to drop erased
customers' rows; erasure (cxdash.governance.erasure) writes it; privacy re-exports the hash.
"""

from __future__ import annotations

import hmac
import logging
import os
import secrets
import tomllib
from hashlib import sha256
from pathlib import Path

import sqlalchemy as sa

from cxdash import config
from cxdash.store.database import Store, suppression_table

__all__ = ["SALT_ENV", "SALT_FILE_NAME", "identifier_hash", "secret_salt", "suppressed_hashes"]

log = logging.getLogger(__name__)

SALT_ENV = "CXDASH_SECRET_SALT"
SALT_FILE_NAME = ".secret_salt"


def _salt_from_secrets_file() -> str | None:
    path = config.REPO_ROOT / ".streamlit" / "secrets.toml"
    if not path.is_file():
        return None
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        log.warning("cannot read %s: %s", path, exc)
        return None
    value = data.get("cxdash_secret_salt") or data.get("cxdash", {}).get("secret_salt")
    return str(value) if value else None


def secret_salt() -> bytes:
    """The installation's secret salt: ``$CXDASH_SECRET_SALT``, else ``cxdash_secret_salt`` in
    ``.streamlit/secrets.toml``, else a random one generated once into ``data/.secret_salt``
    (git-ignored, readable by the owner only). Keep it: suppression hashes made with one salt
    do not match under another."""
    value = os.environ.get(SALT_ENV) or _salt_from_secrets_file()
    if value:
        return value.encode("utf-8")
    path = Path(os.environ.get("CXDASH_DATA_DIR", config.DATA_DIR)) / SALT_FILE_NAME
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        # Written whole under a private name, then linked into place: a process that finds the file
        # never reads it half-written (an O_EXCL create then a write let a second process read it
        # empty and hash with an empty salt). The link fails if another process linked first.
        tmp = path.with_name(f"{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_hex(32))
        try:
            os.link(tmp, path)
        except FileExistsError:  # another process made it first: use theirs
            pass
        else:
            log.warning("generated a secret salt in %s; back it up with the database", path)
        finally:
            tmp.unlink(missing_ok=True)
    value = path.read_text().strip()
    if not value:
        raise RuntimeError(f"the secret salt file {path} is empty: restore it from the backup made with the database")
    return value.encode("utf-8")


def identifier_hash(key: str, salt: bytes | None = None) -> str:
    """HMAC-SHA256 (hex) of an identifier written ``field:normalised value``."""
    return hmac.new(salt if salt is not None else secret_salt(), key.encode("utf-8"), sha256).hexdigest()


def suppressed_hashes(store: Store) -> set[str]:
    """Every suppressed identifier hash (empty on a store that never erased anyone)."""
    with store.app_begin() as conn:
        return {r[0] for r in conn.execute(sa.select(suppression_table.c.id_hash))}
