"""Compare view: an image beside its plot type's reference and the difference map, with the reference score
and its limit, the reference version and runs, and the image's GradCAM where the model drew one — the "why"
a shift crew needs next to a card (issue 14).

Opened from a Run card's or a Browser tile's "compare" link (`/compare?image=ID`); without one it shows the
newest image its reference flagged, else the newest Run card.  The pictures come from
`hydra_assets.references.compare_pictures` as arrays (resized and masked as the score saw them) and are
drawn here as PNGs embedded in the page; the image itself and its GradCAM are served by id like everywhere.
"""

from __future__ import annotations

import base64
import io
from datetime import timedelta
from typing import Any

import numpy as np
import panel as pn
import param
from PIL import Image as PILImage

from hydra_assets.db.models import utcnow
from hydra_assets.rules import REFERENCE_TEXT
from panel_app.images import gradcam_url, image_url
from panel_app.pages.common import empty_state, esc, html_pane, request_args
from panel_app.store import HydraStore
from panel_app.views_data import Comparison, fmt_score

UNLIKE_TEXT = REFERENCE_TEXT  # "unlike its reference", as the Keeper's alarms say it
DEFAULT_WINDOW = timedelta(hours=24)  # without ?image=, the newest image flagged this recently
SHOWN_WIDTH = 300  # CSS pixels per picture; small arrays are scaled up without smoothing

COMPARE_CSS = """
.pics { display: flex; flex-wrap: wrap; gap: 14px; align-items: flex-start; }
figure { margin: 0; border: 1px solid #d0d7de; border-radius: 6px; padding: 6px; background: #fff; }
figure img { width: 300px; display: block; image-rendering: pixelated; background: #f6f8fa; }
.camwrap { position: relative; width: 300px; }
.camwrap img.cam { position: absolute; inset: 0; height: 100%; opacity: 0.8; background: none; }
figcaption { font-size: 0.85em; color: #3d4a5a; margin-top: 4px; max-width: 300px; }
.verdict { font-size: 1.05em; margin: 4px 0 10px; }
.verdict .unlike { background: #b54708; color: #fff; border-radius: 8px; padding: 1px 8px; font-weight: 600; }
.verdict .like { background: #e7f5ec; color: #05603a; border-radius: 8px; padding: 1px 8px; font-weight: 600; }
.scale { display: inline-block; width: 120px; height: 10px; vertical-align: middle; border: 1px solid #ccc;
  background: linear-gradient(90deg, #2166ac, #ffffff, #b2182b); }
"""


def as_grey_or_rgb(array: Any) -> np.ndarray:
    """An image array (2-D, or H x W x 1/3/4; values 0–1 or 0–255) as uint8 for a PNG."""
    data = np.asarray(array, dtype=float)
    if data.ndim == 3 and data.shape[2] == 1:
        data = data[:, :, 0]
    if data.ndim == 3 and data.shape[2] == 4:
        data = data[:, :, :3]
    finite = data[np.isfinite(data)]
    if finite.size and finite.max() <= 1.0 + 1e-9:
        data = data * 255.0
    return np.clip(np.nan_to_num(data), 0, 255).astype(np.uint8)


def diverging(difference: Any) -> tuple[np.ndarray, float]:
    """A difference map in a diverging colour map: white where image and reference agree, red where the image
    is higher, blue where it is lower, symmetric around zero; returns (RGB uint8, the value at full colour)."""
    data = np.asarray(difference, dtype=float)
    if data.ndim == 3:
        data = data.mean(axis=2)
    data = np.nan_to_num(data)
    peak = float(np.abs(data).max()) or 1.0
    t = np.clip(data / peak, -1.0, 1.0)[..., None]
    red, white, blue = np.array([178, 24, 43.0]), np.array([255, 255, 255.0]), np.array([33, 102, 172.0])
    rgb = np.where(t >= 0, white + t * (red - white), white - t * (blue - white))
    return np.clip(rgb, 0, 255).astype(np.uint8), peak


def png_uri(array: np.ndarray) -> str:
    out = io.BytesIO()
    PILImage.fromarray(array).save(out, format="PNG")
    return "data:image/png;base64," + base64.b64encode(out.getvalue()).decode()


def figure_html(src: str, caption: str, alt: str) -> str:
    return f'<figure><img src="{src}" alt="{esc(alt)}"><figcaption>{caption}</figcaption></figure>'


def verdict_html(c: Comparison) -> str:
    """Score against limit in one line: the first thing a shift crew reads."""
    if c.score is None:
        return f'<p class="verdict">No reference score: {esc(c.reason or "not computed yet")}</p>'
    runs = ", ".join(map(str, c.runs)) or "—"
    where = f"reference v{esc(c.version)} (run{'s' if len(c.runs) != 1 else ''} {esc(runs)})"
    if c.limit is None:
        return f'<p class="verdict">score <b>{fmt_score(c.score)}</b> · no limit calibrated yet · {where}</p>'
    if c.unlike:
        badge = f'<span class="unlike">{UNLIKE_TEXT}</span> score <b>{fmt_score(c.score)}</b> &gt; limit '
    else:
        badge = f'<span class="like">like its reference</span> score <b>{fmt_score(c.score)}</b> ≤ limit '
    return f'<p class="verdict">{badge}<b>{fmt_score(c.limit)}</b> · {where}</p>'


def compare_html(c: Comparison, *, gradcam: bool) -> str:
    """The whole view for one comparison (every text from the database escaped)."""
    if not c.plot_type:
        return empty_state("No such image", esc(c.reason))
    head = (f"<h3>{esc(c.plot_type)} run {esc(c.run)} chunk {esc(c.chunk)} "
            f'<small class=muted>image {c.image_id} · <a href="{image_url(c.image_id, "full")}" target="_blank">'
            "full size</a></small></h3>")
    pictures = []
    if c.image is not None:
        pictures.append(figure_html(png_uri(as_grey_or_rgb(c.image)), "the image, as compared", "image"))
    else:
        pictures.append(figure_html(image_url(c.image_id), "the image", "image"))
    if c.reference is not None:
        pictures.append(figure_html(png_uri(as_grey_or_rgb(c.reference)),
                                    f"the reference: mean of its images (v{esc(c.version)})", "reference"))
    if c.difference is not None:
        rgb, peak = diverging(c.difference)
        pictures.append(figure_html(
            png_uri(rgb), f"difference (pulls: image − reference, in reference spreads): <span class=scale></span> "
            f"−{peak:.1f} … +{peak:.1f}; "
            "red where the image is lighter than the reference (missing ink), blue where darker (extra ink)", "difference"))
    if gradcam:  # the heatmap over the image, as the Run page's overlay draws it
        pictures.append(
            f'<figure><div class="camwrap"><img src="{image_url(c.image_id, "full")}" alt="image under GradCAM">'
            f'<img class="cam" src="{gradcam_url(c.image_id, "full")}" alt="GradCAM"></div>'
            "<figcaption>GradCAM over the image: where the model looked</figcaption></figure>")
    missing = ""
    if c.reference is None or c.difference is None:
        missing = empty_state("Nothing to compare this image with", esc(c.reason or "No reference for this plot type "
                              "yet: choose one in the Library (\"use run N as reference\")."))
    return head + verdict_html(c) + missing + f'<div class="pics">{"".join(pictures)}</div>'


def reference_line(score: float | None, limit: float | None, flagged: bool, image_id: int) -> str:
    """A Browser tile's reference score against its limit, badged when stored as unlike, and a compare link."""
    link = f'<a href="./compare?image={int(image_id)}" target="_blank">compare</a>'
    if score is None:
        return f"<span class=muted>no reference score</span>{link}"
    if flagged:
        return (f'<span><span class="chip" style="background:#b54708">{UNLIKE_TEXT}</span> {fmt_score(score)} &gt; '
                f"{fmt_score(limit)}</span>{link}")
    return f"<span>reference {fmt_score(score)} / limit {fmt_score(limit)}</span>{link}"


class ComparePage(pn.viewable.Viewer):
    """One image beside its reference; `?image=ID` chooses it."""

    image = param.Integer(default=None, allow_None=True, doc="The image to compare (its id)")

    def __init__(self, store: HydraStore, **params) -> None:
        self.store = store
        super().__init__(**params)
        self.body = html_pane("", stylesheets=[COMPARE_CSS])
        self.note = ""
        if self.image is None:
            self.image = self._from_request()
        self.refresh()

    def _from_request(self) -> int | None:
        """?image=ID, else the newest image its reference flagged, else the newest Run card."""
        raw = request_args().get("image", "").strip()
        if raw:
            if raw.isdigit():
                return int(raw)
            self.note = f"“{raw}” is not an image number: showing the newest instead."
        flagged = self.store.flagged_by_reference(utcnow() - DEFAULT_WINDOW)
        if flagged:
            return flagged[0].image_id
        cards = self.store.run_grid()
        return max(cards, key=lambda c: c.updated_at).image_id if cards else None

    @param.depends("image", watch=True)
    def refresh(self) -> None:
        if self.image is None:
            self.body.object = empty_state(
                "No images to compare yet",
                "Each image is compared with its plot type's reference once the pipeline has scored it.",
                "Open a Run card's <b>compare</b> link, or start the demo with <code>hydra up</code>.")
            return
        comparison = self.store.compare(self.image)
        gradcam = self.store.locator.gradcam_path(self.image) is not None
        note = f"<p class=muted>{esc(self.note)}</p>" if self.note else ""
        self.body.object = note + compare_html(comparison, gradcam=gradcam)

    def __panel__(self) -> pn.viewable.Viewable:
        return pn.Column(self.body, sizing_mode="stretch_width")
