"""The deploy host: what runs an artifact and measures it where only Python, numpy and TVM's runtime are.

Post-processing (``detect``), timing in interleaved rounds (``rounds``), their statistics
(``stats``), the per-op profiler, a bundle's reference check (``check``), the regeneration of
synthetic weights (``weights``) and the bundle's entry point (``python -m yolov3_tvm_opt.deploy``).
It stands on ``core`` and ``runtime`` (plus numpy-only ``models.darknet_cfg`` for the weights),
so a deploy bundle ships exactly the files its entry point's imports reach; ``evaluate`` and the
CLI use it. ``compiler`` never imports it, so an edit to code that measures reruns no build stage.
"""
