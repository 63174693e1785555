"""Measuring frozen features: the evaluation data side of a JEPA experiment.

``protocols.EvalDataModule`` wraps any of the package's DataModules for the "knn" and
"linear" protocols (labelled train split + evaluation split, fixed order, every item once
under DDP, no masks); ``shots.py`` picks N labelled images per class; ``subsets.py`` maps
SimCLR's ImageNet 1 % / 10 % lists onto a prepared ImageNet; ``features.py`` extracts and
caches features; ``metrics.py`` holds weighted kNN, the logistic-regression probe and the
binomial interval; ``monitor.py`` is the kNN-monitor Lightning callback.
"""
