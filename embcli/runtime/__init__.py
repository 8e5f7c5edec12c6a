"""Running a model: the ONNX encoder, pooling, provenance, the embed loop, the vector cache."""
