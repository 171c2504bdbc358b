"""`python -m picpipe` hands over to the CLI."""

from __future__ import annotations

from picpipe.cli.app import main

if __name__ == "__main__":
    main()
