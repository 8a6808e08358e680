"""DVC stage `smoke`: can this TVM compile, load and run on the configured target?"""

import sys
from pathlib import Path

from yolov3_tvm_opt.artifact_io import write_json
from yolov3_tvm_opt.errors import exit_code_of
from yolov3_tvm_opt.params import load_section
from yolov3_tvm_opt.smoke import run_smoke


def main() -> None:
    target = load_section("target")
    report = run_smoke(target.compile_options(fast_scatter_nd=False))
    write_json(Path("metrics/smoke.json"), report)
    print(f"smoke: TVM {report['tvm_version']}, cuda enabled {report['cuda_enabled']}, ran {report['ran']}")


if __name__ == "__main__":
    sys.exit(exit_code_of(main))
