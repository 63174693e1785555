"""Tests of datamodule.py: the DataModules end to end: configs as constructor arguments, Trainer runs, ImageNet DataModules, resume and DDP."""
