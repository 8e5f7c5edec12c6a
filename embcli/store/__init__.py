"""Model directories, the built-in model's facts, hub downloads and the graph cache.

Reads only: resolving a model never builds one (that is ``embcli.build``).
"""
