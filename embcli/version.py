"""embcli's version: recorded in index manifests, graph caches and provenance."""

__version__ = "0.1.0"
