"""Tests of jepa_datamodules.pipeline.masks, module by module."""
