"""Whole-set analysis over vectors: clusters, classifiers, anomaly detectors, corpus diffs, quantized codes."""
