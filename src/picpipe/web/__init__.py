"""The HTTP side of picpipe: ``create_app(settings)`` builds the FastAPI application."""
