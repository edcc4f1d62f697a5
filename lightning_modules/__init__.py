"""Torch code of harmony: data modules, backbones, attributions, metrics and the
fine-tuning LightningModule. Knows nothing about the CLI, the store or the page."""
