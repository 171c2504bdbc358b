"""Sources: one module per kind behind the `Source` protocol in ``base``."""
