"""The ONNX model: onnxruntime (telemetry off), what a model file says about itself, its
identity, the int8 self-check and the encoder. Layer 2: imports image/ and the base."""
