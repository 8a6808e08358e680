"""Compile YOLOv3 ONNX models with Apache TVM (Relax), benchmark a baseline and a fast scatter_nd variant."""

__version__ = "0.1.0"
