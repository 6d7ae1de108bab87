"""Datasets: the reference on-disk format, the sampler and the task builders."""
