"""prunecli's Hydra configs, shipped in the wheel as the package prunecli.conf (pkg://prunecli.conf)."""
