"""Datasets: sources by name, leakage-free splits, a decode-once cache, batched augmentation."""
