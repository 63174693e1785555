"""The console scripts: Hydra apps, inventory, fit summary, pictures, the tiny JEPA."""
