"""Indexes on disk, the ``--where`` filter compiler, shards and nearest neighbours."""
