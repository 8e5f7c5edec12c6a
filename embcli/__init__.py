"""embcli: text embeddings as Unix pipelines."""

__version__ = "0.1.0"
