"""The greenplace command line."""
