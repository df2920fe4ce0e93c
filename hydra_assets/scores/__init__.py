"""Scores beside the classifier: pure functions of features and calibrations (no Dagster, no TensorFlow).

- `novelty`: how unlike the model's training images an image is, with the limit calibrated on them.
"""
