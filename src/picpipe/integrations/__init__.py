"""Links to the tools around the library: consumers that read it in place."""
