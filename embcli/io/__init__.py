"""Bottom layer: readers and writers of every stream format, atomic files, prefetch.

Imports nothing else from embcli but ``embcli.errors``.
"""
