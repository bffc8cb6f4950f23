"""Builds ser-live's model from labelled corpora: ``python -m training --help``."""
