"""Models of Hydra: topologies, training, max-F1 thresholds, GradCAM, the MLflow library and the active model.

Submodules import TensorFlow lazily where they can, so `import hydra_assets.ml` alone stays cheap.
"""

import os

# Quiet TensorFlow's C++ start-up banner before anything imports it; real errors still show.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
