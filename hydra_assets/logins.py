"""Logins for the pages: the credentials file under HYDRA_HOME that `hydra user add`, `hydra up` and the
demo write, and the pages' login reads on every sign-in (so a login added while the pages run works at once).

The file is JSON `{"user": "password", …}`, readable by its owner only (0600), written atomically.  The
passwords are stored as typed because Panel's basic-auth login compares them as they are; a site that
needs more uses OAuth (docs/pages.md).  A login name is the Hydra user of the same name: what it may do
comes from that user's role and grants.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path

from sqlalchemy import select

from hydra_assets import catalog
from hydra_assets.db.engine import HydraDB
from hydra_assets.db.models import Role, User
from hydra_assets.settings import HydraSettings

CREDENTIALS_FILE = "credentials.json"
FIRST_ADMIN = "admin"
MIN_PASSWORD = 8


class LoginError(RuntimeError):
    """A login cannot be set (bad password, unreadable file); the message says what to do."""


def credentials_path(config: HydraSettings) -> Path:
    """Where the pages read logins (`hydra pages --credentials` defaults to it)."""
    return config.home / CREDENTIALS_FILE


def read_logins(path: Path) -> dict[str, str]:
    """The logins in `path` (empty when the file does not exist yet)."""
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise LoginError(f"credentials file {path} is not valid JSON: {error}") from error
    if not isinstance(data, dict):
        raise LoginError(f"credentials file {path} must be a JSON object of user: password")
    return data


def new_password() -> str:
    return secrets.token_urlsafe(12)


def check_password(password: str) -> str:
    """Refuse a password the login would not take or that is too short to be worth having."""
    if len(password) < MIN_PASSWORD:
        raise LoginError(f"a password needs at least {MIN_PASSWORD} characters")
    if password != password.strip() or "\n" in password:
        raise LoginError("a password may not start or end with spaces or hold a line break")
    return password


def set_logins(path: Path, passwords: dict[str, str]) -> Path:
    """Add or replace logins, keeping the others; the file stays owner-readable only (0600) at all times."""
    logins = {**read_logins(path), **passwords}
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.unlink(missing_ok=True)
    partial.touch(mode=0o600)  # created private: the password is never readable by others, not even briefly
    partial.chmod(0o600)
    partial.write_text(json.dumps(logins, indent=1), encoding="utf-8")
    partial.replace(path)
    return path


def ensure_first_admin(db: HydraDB, config: HydraSettings) -> tuple[str, str] | None:
    """Create a login for an admin when no admin can log in yet (a fresh production home); once.

    Returns (name, password) of the login made now, so the caller shows the password once; None when an
    admin already has a login.  The admin user `admin` is created when missing.
    """
    path = credentials_path(config)
    logins = read_logins(path)

    def admins(session) -> list[str]:  # type: ignore[no-untyped-def]
        return list(session.scalars(select(User.name).join(Role, Role.id == User.role_id)
                                    .where(Role.name == "admin", User.active.is_(True))))

    with db.read() as s:
        if any(name in logins for name in admins(s)):
            return None
        existing = s.scalar(select(User).where(User.name == FIRST_ADMIN))
        if existing is not None and (existing.role is None or existing.role.name != "admin"):
            raise LoginError(f"no admin can log in to the pages and user {FIRST_ADMIN!r} is not an admin; "
                             "add one: `hydra user add NAME --role admin`")
        missing = existing is None
    if missing:
        db.write(lambda s: catalog.add_user(s, FIRST_ADMIN, role="admin", full_name="first admin"),
                 what="add the first admin")
    password = new_password()
    set_logins(path, {FIRST_ADMIN: password})
    return FIRST_ADMIN, password
