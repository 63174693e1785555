"""jepa-bench: loader throughput against a plain torchvision baseline (never imported by the library)."""
