"""Monitoring image file names: `<plot_type>-<run>-<chunk>.<png|jpg|jpeg>` or a configured regex."""

from __future__ import annotations

import re
from dataclasses import dataclass

from hydra_assets.settings import DEFAULT_FILE_PATTERN

DEFAULT_REGEX = re.compile(DEFAULT_FILE_PATTERN, re.ASCII)  # \d: 0-9 only, not other scripts' digits


class BadFileName(ValueError):
    """The name does not follow the naming convention; the reason says how."""


@dataclass(frozen=True, slots=True)
class ImageName:
    plot_type: str
    run: int
    chunk: int
    file_name: str


def parse_image_name(file_name: str, regex: re.Pattern[str] = DEFAULT_REGEX) -> ImageName:
    """Split a file name into plot type, run and chunk, or raise `BadFileName` with a readable reason."""
    if "/" in file_name or "\\" in file_name or file_name in {".", ".."}:
        raise BadFileName(f"{file_name!r} is a path, not a file name")
    match = regex.match(file_name)
    if match is None:
        raise BadFileName(f"{file_name!r} does not match the naming pattern {regex.pattern}")
    plot_type = match.group("plot_type")
    if not re.fullmatch(r"[A-Za-z0-9_]+", plot_type or "", re.ASCII):
        raise BadFileName(f"{file_name!r} has an invalid plot type {plot_type!r}")
    try:
        run, chunk = int(match.group("run")), int(match.group("chunk"))
    except (TypeError, ValueError) as error:
        raise BadFileName(f"{file_name!r}: run and chunk must be decimal numbers") from error
    return ImageName(plot_type=plot_type, run=run, chunk=chunk, file_name=file_name)


def image_file_name(plot_type: str, run: int, chunk: int, ext: str = "png") -> str:
    """The conventional name, e.g. `RF_FDC_selftiming-121264-0011.png`."""
    return f"{plot_type}-{run}-{chunk:04d}.{ext}"
