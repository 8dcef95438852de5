"""What scripts/ call: replay, rebuild, keys, export, repair, demo."""
