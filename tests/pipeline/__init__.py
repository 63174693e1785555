"""Tests of pipeline/: masks, views and transforms, randomness, the device path, and batches in other training code (adapters)."""
