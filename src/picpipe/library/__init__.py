"""The on-disk library: layout of originals, sidecars and thumbnails, and atomic placement."""
