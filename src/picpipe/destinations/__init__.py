"""Destinations: one module per kind behind the `Destination` protocol in ``base``."""
