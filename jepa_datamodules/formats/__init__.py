"""One module per on-disk format: how to read it, write a small copy, and prepare it."""
