"""Making graphs: safetensors → ONNX, the numpy reference, the accuracy gate, int8, the default graph.

An explicit step, called by the CLI and the API; nothing under store/ or runtime/ imports it.
"""
