"""The import pipeline: scan, hash, dedupe, metadata, place; each stage a plain function."""
