"""Security over HTTP against the real `hydra pages` server: every page and image URL needs the login; image
URLs cannot reach files outside the image folders (`..`, absolute paths, database paths outside, symlinks
pointing outside); a WebSocket from a foreign origin is refused while the same handshake from the page's own
origin is accepted (so the refusal is the origin check, not a broken handshake).
"""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path

import pytest
import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "ui"))

from pages_factory import PASSWORDS, draw_plot, populate
from pages_server import make_home, start_pages, stop_pages

from hydra_assets.db.engine import HydraDB
from hydra_assets.db.models import Image
from panel_app.auth import write_credentials
from panel_app.pages import PAGES

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    settings = make_home(tmp_path_factory.mktemp("security_http"))
    db = HydraDB(settings.db_url)
    demo = populate(db, settings)
    outside = settings.home / "secret.png"  # an image file outside every image folder
    outside.write_bytes(draw_plot(5))
    link = settings.images_dir / "evil" / "link.png"
    link.parent.mkdir(parents=True)
    link.symlink_to(outside)
    plot_type_id = next(iter(demo.plot_types.values()))

    def work(s):  # type: ignore[no-untyped-def]
        rows = {}
        for key, stored in {"passwd": "/etc/passwd", "outside": str(outside), "symlink": str(link),
                            "climb": str(settings.images_dir / ".." / "secret.png"), "relative": "../secret.png"}.items():
            row = Image(plot_type_id=plot_type_id, run_number=1, chunk=len(rows) + 1, digest=f"{key:0<64}"[:64],
                        file_name=f"{key}.png", stored_path=stored, status="registered")
            s.add(row)
            s.flush()
            rows[key] = row.id
        return rows

    evil = db.write(work)
    good = db.write(lambda s: s.query(Image.id).filter(Image.stored_path.like(f"{settings.images_dir}%"),
                                                         Image.id.notin_(list(evil.values()))).first()[0])
    db.dispose()
    credentials = write_credentials(settings.home / "credentials.json", PASSWORDS)
    server = start_pages(settings, "--credentials", str(credentials))
    server.extra.update(evil=evil, good=good)
    yield server
    stop_pages(server)


def logged_in(served, user: str = "viewer") -> requests.Session:  # type: ignore[no-untyped-def]
    session = requests.Session()
    response = session.post(f"{served.url}/login", data={"username": user, "password": PASSWORDS[user]},
                            allow_redirects=False, timeout=30)
    assert response.status_code in (302, 303) and session.cookies, (response.status_code, response.text[:300])
    return session


def test_every_page_and_image_url_needs_the_login(served):
    urls = ["/", *[f"/{slug}" for slug in PAGES], "/hydra/image/1?size=thumb", "/hydra/image/1?size=full",
            "/hydra/gradcam/1", "/run/ws"]
    for url in urls:
        response = requests.get(served.url + url, allow_redirects=False, timeout=30)
        assert response.status_code in (302, 303, 401, 403), (url, response.status_code)
        if response.status_code in (302, 303):
            assert "login" in response.headers["location"], (url, response.headers["location"])
    for url in ("/hydra/image/..%2F..%2F..%2Fetc%2Fpasswd", "/hydra/image/%2Fetc%2Fpasswd", "/../../etc/passwd",
                "/run/autoload.js"):
        response = requests.get(served.url + url, allow_redirects=False, timeout=30)  # no route matches these
        assert response.status_code in (302, 303, 400, 401, 403, 404) and b"root:" not in response.content, url


def test_image_urls_cannot_leave_the_image_folders(served):
    session = logged_in(served)
    good = session.get(f"{served.url}/hydra/image/{served.extra['good']}?size=full", timeout=30)
    assert good.status_code == 200 and good.content[:4] == b"\x89PNG"  # control: the handler does serve
    for key, image_id in served.extra["evil"].items():
        for route in ("image", "gradcam"):
            response = session.get(f"{served.url}/hydra/{route}/{image_id}?size=full", timeout=30)
            assert response.status_code in (403, 404), (key, route, response.status_code)
            assert b"root:" not in response.content and b"\x89PNG" not in response.content, key
    for path in ("..%2F..%2Fsecret.png", "%2Fetc%2Fpasswd", "../../secret.png", "1/../../secret.png",
                 "-1", "1e3", "0x10"):
        response = session.get(f"{served.url}/hydra/image/{path}", timeout=30)
        assert response.status_code in (400, 403, 404), (path, response.status_code)
        assert b"root:" not in response.content and b"\x89PNG" not in response.content, path


def websocket_status(url: str, origin: str, cookies: dict[str, str], token: str) -> int:
    from tornado.httpclient import HTTPClientError, HTTPRequest
    from tornado.websocket import websocket_connect

    async def attempt() -> int:
        request = HTTPRequest(url, headers={"Origin": origin,
                                            "Cookie": "; ".join(f"{k}={v}" for k, v in cookies.items())})
        try:
            connection = await websocket_connect(request, subprotocols=["bokeh", token])
        except HTTPClientError as error:
            return error.code
        connection.close()
        return 101

    return asyncio.run(attempt())


def test_websocket_from_a_foreign_origin_is_refused(served):
    session = logged_in(served)
    page = session.get(f"{served.url}/run", timeout=60)
    assert page.status_code == 200
    match = re.search(r'"token":\s*"([^"]+)"', page.text) or re.search(r"token=([A-Za-z0-9_.\-]+)", page.text)
    assert match, page.text[:500]
    token = match.group(1)
    ws = served.url.replace("http://", "ws://") + "/run/ws"
    cookies = session.cookies.get_dict()
    assert websocket_status(ws, "http://evil.example", cookies, token) == 403
    assert websocket_status(ws, "http://127.0.0.1.evil.example", cookies, token) == 403
    assert websocket_status(ws, served.url, cookies, token) == 101  # control: the page's own origin
