"""jepa_datamodules: Lightning DataModules for JEPA pre-training."""
