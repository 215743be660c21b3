"""Reading and writing scans, predictions and caches."""
