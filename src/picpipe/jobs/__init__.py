"""Job execution: a local worker pool now; a distributed engine later behind the same seam."""
