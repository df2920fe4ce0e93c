"""Image serving that cannot leave Hydra's folders, login configuration, and the `hydra pages` command."""

from __future__ import annotations

import io
import json
import os
import stat

import pytest
from click.testing import CliRunner
from pages_factory import draw_plot, make_users_only
from PIL import Image as PILImage

from hydra_assets.db.models import Image, Inference
from hydra_assets.settings import load_settings
from panel_app.auth import AuthError, cookie_secret, load_credentials, write_credentials
from panel_app.images import ImageLocator, gradcam_url, image_roots, image_url, safe_path


@pytest.fixture
def roots(hydra_home):
    for folder in image_roots(hydra_home):
        folder.mkdir(parents=True, exist_ok=True)
    return image_roots(hydra_home)


def test_safe_path_accepts_images_inside_the_folders(roots):
    inside = roots[0] / "A" / "1" / "a.png"
    inside.parent.mkdir(parents=True)
    inside.write_bytes(draw_plot(1))
    assert safe_path(str(inside), roots) == inside.resolve()
    assert safe_path("A/1/a.png", roots) == inside.resolve()


def test_safe_path_refuses_escapes(roots, tmp_path):
    secret = tmp_path / "secret.png"
    secret.write_bytes(draw_plot(2))
    (roots[0] / "notes.txt").write_text("not an image")
    link = roots[0] / "link.png"
    link.symlink_to(secret)  # a symlink inside pointing outside
    sub = roots[0] / "sub"
    sub.mkdir()
    assert safe_path(str(secret), roots) is None  # absolute path outside
    assert safe_path("../secret.png", roots) is None  # `..` climbing out
    assert safe_path("sub/../../secret.png", roots) is None
    assert safe_path(str(link), roots) is None and safe_path("link.png", roots) is None
    assert safe_path("notes.txt", roots) is None  # not an image
    assert safe_path("missing.png", roots) is None and safe_path("", roots) is None and safe_path(None, roots) is None
    assert safe_path("a\x00.png", roots) is None


def test_locator_serves_thumbnails_and_gradcam_by_image_id(sqlite_db, hydra_home, roots):
    from hydra_assets import catalog

    png = roots[0] / "p.png"
    png.write_bytes(draw_plot(3, size=(800, 600)))
    cam = roots[2] / "p-cam.png"
    cam.write_bytes(draw_plot(4))

    def work(s):  # type: ignore[no-untyped-def]
        pt = catalog.add_plot_type(s, "T", "Good,Bad", "Bad")
        outside = Image(plot_type_id=pt.id, run_number=1, chunk=2, digest="b" * 64, file_name="x.png",
                        stored_path="/etc/passwd")
        image = Image(plot_type_id=pt.id, run_number=1, chunk=1, digest="a" * 64, file_name="p.png",
                      stored_path=str(png))
        s.add_all([image, outside])
        s.flush()
        s.add(Inference(image_id=image.id, plot_type_id=pt.id, run_number=1, chunk=1, model_key="m/1",
                        gradcam_path=str(cam)))
        return image.id, outside.id

    image_id, outside_id = sqlite_db.write(work)
    locator = ImageLocator(sqlite_db, hydra_home)
    data, kind = locator.read("image", image_id, "thumb")
    assert kind == "image/png" and PILImage.open(io.BytesIO(data)).size[0] == 360
    assert locator.read("image", image_id, "full")[0] == png.read_bytes()
    assert locator.read("gradcam", image_id, "full")[0] == cam.read_bytes()
    assert locator.read("image", outside_id, "full") is None
    assert locator.read("image", 999, "thumb") is None
    assert image_url(7) == "hydra/image/7?size=thumb" and gradcam_url(7, "full") == "hydra/gradcam/7?size=full"


def test_credentials_file_checks(tmp_path):
    good = write_credentials(tmp_path / "c.json", {"admin": "a", "labeler": "b"})
    assert load_credentials(good) == {"admin": "a", "labeler": "b"}
    assert stat.S_IMODE(os.stat(good).st_mode) == 0o600
    for content, message in [("{", "not valid JSON"), ("[]", "JSON object"), ('{"x": ""}', "non-empty"),
                             ("{}", "at least one")]:
        (tmp_path / "bad.json").write_text(content)
        with pytest.raises(AuthError, match=message):
            load_credentials(tmp_path / "bad.json")
    with pytest.raises(AuthError, match="does not exist"):
        load_credentials(tmp_path / "missing.json")


def test_cookie_secret_is_kept_and_overridable(hydra_home, monkeypatch):
    monkeypatch.delenv("HYDRA_COOKIE_SECRET", raising=False)
    first = cookie_secret(hydra_home)
    assert len(first) >= 32 and cookie_secret(hydra_home) == first
    monkeypatch.setenv("HYDRA_COOKIE_SECRET", "s" * 40)
    assert cookie_secret(load_settings()) == "s" * 40


def test_pages_command_refuses_without_credentials(sqlite_db, hydra_home):
    from hydra_assets.cli import cli

    make_users_only(sqlite_db)
    result = CliRunner().invoke(cli, ["pages", "--port", "0"])
    assert result.exit_code != 0 and "credentials file" in result.output and "--no-auth" in result.output
    result = CliRunner().invoke(cli, ["pages", "--user", "admin"])
    assert result.exit_code != 0 and "--user only applies with --no-auth" in result.output
    (hydra_home.home / "broken.json").write_text(json.dumps({"admin": 1}))
    result = CliRunner().invoke(cli, ["pages", "--credentials", str(hydra_home.home / "broken.json")])
    assert result.exit_code != 0 and "non-empty password" in result.output
    help_text = CliRunner().invoke(cli, ["pages", "--help"]).output
    for option in ("--port", "--address", "--credentials", "--no-auth"):
        assert option in help_text
