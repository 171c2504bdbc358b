"""The long-running service (`picpipe start`) and the parts it runs beside the pipeline."""
