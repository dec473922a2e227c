"""The engine: a scene to files. Load the model once, project photos, build render jobs, render missing segments here, on Dask or as a shard, join, report."""
