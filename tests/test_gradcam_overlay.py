"""The GradCAM overlay file (issue 18: legible at the Run page's default opacity on light and dark plots)."""

from __future__ import annotations

import numpy as np
from PIL import Image

from hydra_assets.ml.gradcam import save_overlay


def test_gradcam_overlay_outlines_the_hot_region_on_light_and_dark_plots(tmp_path):
    """save_overlay (chosen after looking, docs/pages.md): the edge of the hot region is white inside and black
    outside, so it reads on a white histogram and on a black occupancy map alike."""
    yy, xx = np.mgrid[0:8, 0:10]
    heat = np.exp(-(((xx - 5) / 1.5) ** 2 + ((yy - 4) / 1.5) ** 2)).astype(np.float32)
    for background in (1.0, 0.0):
        plot = np.full((120, 160, 3), background, dtype=np.float32)
        picture = np.asarray(Image.open(save_overlay(plot, heat, tmp_path / f"{background}.png")))
        assert picture.shape == (120, 160, 3)
        assert (picture == 255).all(axis=-1).any() and (picture == 0).all(axis=-1).any()  # both tones of the edge
        assert np.abs(picture[60, 80].astype(int) - int(background * 255)).max() > 60  # the peak is coloured
