"""ONNX -> Relax -> a built artifact: the fast scatter pass, CPU conv packing and schedules, MetaSchedule tuning.

Stands on core, models and runtime (tuning checks its RPC tracker there); nothing below imports it.
"""
