"""Model sources and what we do to ONNX files: Darknet -> ONNX, input specs, dense-scatter proofs.

Imports no TVM: the model stage, and every runtime that reads our ONNX, need only onnx and numpy.
"""
