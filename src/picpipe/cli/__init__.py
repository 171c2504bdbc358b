"""The command line: Typer commands with Rich output and ``--json`` for scripts."""
