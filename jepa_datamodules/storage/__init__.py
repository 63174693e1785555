"""Bytes on disk: downloads, extraction, verification stamps, locks, atomic writes."""
