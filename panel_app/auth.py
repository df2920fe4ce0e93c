"""Login for the pages: Panel's basic auth over a credentials file, and the cookie secret that signs it.

The credentials file is JSON `{"user": "password", …}` (`hydra up` writes one under HYDRA_HOME with an
admin and a labeler).  A login name is mapped to the Hydra user of the same name; what it may do comes
from that user's role and grants (`catalog.has_permission`), checked again in every write.  A login
without a Hydra user can look at everything and change nothing.  Production uses OAuth instead
(docs/pages.md).
"""

from __future__ import annotations

import json
import secrets
import stat
from pathlib import Path

from hydra_assets.settings import HydraSettings

CREDENTIALS_FILE = "credentials.json"  # what `hydra up` writes
COOKIE_SECRET_FILE = "pages_cookie_secret"
LOGIN_TEMPLATE = Path(__file__).parent / "templates" / "login.html"


class AuthError(RuntimeError):
    """The login configuration cannot work; the message says what to fix."""


def default_credentials_path(settings: HydraSettings) -> Path:
    return settings.home / CREDENTIALS_FILE


def load_credentials(path: Path) -> dict[str, str]:
    """Read and check a credentials file: a JSON object of non-empty user names to non-empty passwords."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as error:
        raise AuthError(f"credentials file {path} does not exist (JSON of user: password)") from error
    except json.JSONDecodeError as error:
        raise AuthError(f"credentials file {path} is not valid JSON: {error}") from error
    if not isinstance(data, dict) or not data:
        raise AuthError(f"credentials file {path} must be a JSON object of user: password, with at least one user")
    bad = [k for k, v in data.items() if not isinstance(k, str) or not k or not isinstance(v, str) or not v]
    if bad:
        raise AuthError(f"credentials file {path}: users {bad} need a non-empty password string")
    return data


def write_credentials(path: Path, users: dict[str, str]) -> Path:
    """Write a credentials file readable by its owner only (used by `hydra up` and the tests)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(users, indent=2), encoding="utf-8")
    path.chmod(stat.S_IRUSR | stat.S_IWUSR)
    return path


def cookie_secret(settings: HydraSettings) -> str:
    """`HYDRA_COOKIE_SECRET` (`settings.cookie_secret`), or a random secret kept under HYDRA_HOME (so logins
    survive restarts)."""
    if settings.cookie_secret:
        return settings.cookie_secret
    path = settings.home / COOKIE_SECRET_FILE
    if path.exists():
        secret = path.read_text(encoding="utf-8").strip()
        if len(secret) >= 32:
            return secret
    secret = secrets.token_urlsafe(48)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(secret, encoding="utf-8")
    path.chmod(stat.S_IRUSR | stat.S_IWUSR)
    return secret


def session_user(no_auth_user: str | None = None) -> str | None:
    """The login of the current browser session (`pn.state.user`), or the local user without login."""
    import panel as pn

    user = pn.state.user
    if user and user not in ("guest", "default_user"):
        return str(user)
    return no_auth_user
