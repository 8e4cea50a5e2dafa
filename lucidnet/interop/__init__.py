"""Bridges to other tools, built on the public core only: scikit-learn estimators
(``estimators``) and the ONNX exporter (``onnx_export``)."""
