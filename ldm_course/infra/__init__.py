"""The plumbing: checkpoints, run folders, value ranges, precision, devices, DDP, image files."""
