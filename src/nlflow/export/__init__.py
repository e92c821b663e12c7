"""The test-mode network exported for deployment (``.onnx``, ``.pt2``) and loaded back for inference."""
