"""From a sample to a batch: views, masks, sampling, batching (pure torch, no Lightning)."""
