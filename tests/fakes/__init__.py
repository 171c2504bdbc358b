"""Spec-built fakes of the services picpipe talks to (Immich), with their own tests."""
