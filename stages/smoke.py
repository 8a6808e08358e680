"""DVC stage `smoke`: can this TVM compile, load and run on the configured target?"""

import argparse
from pathlib import Path

from _stage import run

from yolov3_tvm_opt.core.files import write_json
from yolov3_tvm_opt.core.params import load_section
from yolov3_tvm_opt.evaluate.smoke import run_smoke


def main(args: argparse.Namespace) -> None:
    report = run_smoke(load_section("target"))
    write_json(Path(args.out), report)
    print(f"smoke: TVM {report['tvm_version']}, cuda enabled {report['cuda_enabled']}, ran {report['ran']}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", required=True, help="the report (facts only, no timings)")
    run(main, parser)
