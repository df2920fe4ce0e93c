"""Configuration and file-name conventions."""

from pathlib import Path

import pytest

from hydra_assets.naming import BadFileName, image_file_name, parse_image_name
from hydra_assets.settings import SettingsError, load_settings


def test_defaults_live_under_hydra_home(hydra_home):
    home = hydra_home.home
    assert hydra_home.db_url == f"sqlite:///{home / 'hydra.db'}"
    assert hydra_home.mlflow_tracking_uri == f"sqlite:///{home / 'mlflow.db'}"
    assert hydra_home.input_dir == home / "incoming"
    assert hydra_home.dagster_home == home / "dagster"
    assert all(str(p).startswith(str(home)) for p in hydra_home.folders.values())


def test_environment_overrides_every_location(monkeypatch, tmp_path):
    monkeypatch.setenv("HYDRA_HOME", str(tmp_path / "h"))
    monkeypatch.setenv("HYDRA_DB_URL", "mysql+pymysql://hydra:secret@db.example/hydra")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.example:5000")
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dh"))
    monkeypatch.setenv("HYDRA_INPUT_DIR", str(tmp_path / "shared" / "in"))
    monkeypatch.setenv("HYDRA_KEPT_DIR", str(tmp_path / "shared" / "kept"))
    config = load_settings()
    assert config.db_url.startswith("mysql+pymysql://")
    assert config.mlflow_tracking_uri == "http://mlflow.example:5000"
    assert config.dagster_home == tmp_path / "dh"
    assert config.input_dir == tmp_path / "shared" / "in"
    assert config.kept_dir == tmp_path / "shared" / "kept"
    assert config.quarantine_dir == tmp_path / "h" / "quarantine"


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("HYDRA_FILE_PATTERN", r"(?P<plot_type>\w+)-(?P<run>\d+)", "chunk"),
        ("HYDRA_FILE_PATTERN", r"([unclosed", "not a valid regular expression"),
        ("HYDRA_DB_URL", "hydra.db", "is not a URL"),
        ("HYDRA_MAX_IMAGE_PIXELS", "-5", "HYDRA_MAX_IMAGE_PIXELS: Input should be greater than 0"),
        ("HYDRA_EXECUTOR", "kubernetes", "HYDRA_EXECUTOR: Input should be 'in_process', 'multiprocess' or 'celery'"),
        ("HYDRA_RUN_REFRESH_MS", "abc", "HYDRA_RUN_REFRESH_MS"),
    ],
)
def test_invalid_settings_give_one_readable_message(monkeypatch, tmp_path, variable, value, message):
    monkeypatch.setenv("HYDRA_HOME", str(tmp_path))
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError, match="invalid Hydra configuration") as error:
        load_settings()
    assert message in str(error.value)


def test_unwritable_folder_is_named(monkeypatch, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    monkeypatch.setenv("HYDRA_HOME", str(tmp_path / "h"))
    monkeypatch.setenv("HYDRA_KEPT_DIR", str(blocker / "kept"))
    with pytest.raises(SettingsError, match="kept folder"):
        load_settings().ensure_folders()


def test_parse_conventional_name():
    name = parse_image_name("RF_FDC_selftiming-121264-0011.png")
    assert (name.plot_type, name.run, name.chunk) == ("RF_FDC_selftiming", 121264, 11)
    assert image_file_name("RF_FDC_selftiming", 121264, 11) == "RF_FDC_selftiming-121264-0011.png"


@pytest.mark.parametrize(
    "bad",
    ["notes.txt", "FDC-12.png", "FDC-12-x.png", "../FDC-1-1.png", "a/FDC-1-1.png", "FDC occ-1-1.png",
     "FDC<script>-1-1.png", "FDC\"q-1-1.png", "Détecteur-1-1.png", "FDC-1-1.png.exe", "..", "",
     "FDC-١٢-1.png"],
)
def test_names_off_the_convention_are_refused_with_a_reason(bad):
    with pytest.raises(BadFileName) as error:
        parse_image_name(bad)
    assert repr(bad) in str(error.value) or "path" in str(error.value)


def test_configured_pattern(monkeypatch, tmp_path):
    monkeypatch.setenv("HYDRA_HOME", str(tmp_path))
    monkeypatch.setenv("HYDRA_FILE_PATTERN", r"^run(?P<run>\d+)_(?P<chunk>\d+)_(?P<plot_type>\w+)\.png$")
    config = load_settings()
    name = parse_image_name("run42_3_CDC_timing.png", config.file_regex)
    assert (name.plot_type, name.run, name.chunk) == ("CDC_timing", 42, 3)
    assert isinstance(config.home, Path)
