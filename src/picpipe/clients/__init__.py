"""Typed HTTP clients for the services picpipe talks to (Immich; Synology later)."""
