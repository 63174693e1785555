"""Tests of formats/imagenet/: detection and instructions, the devkit, unpacking the official
archives, the Dataset classes' class lists."""
