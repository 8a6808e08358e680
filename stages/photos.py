"""DVC stage `photos`: the sample photos bench and visualize run on, copied out of the installed wheels."""

import argparse
from pathlib import Path

from _stage import run

from yolov3_tvm_opt.evaluate.photos import install_sample_photos


def main(args: argparse.Namespace) -> None:
    paths = install_sample_photos(Path(args.out))
    print(f"photos: {len(paths)} sample photos (sha256-checked, from the installed wheels) in {args.out}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", required=True, help="the photo directory")
    run(main, parser)
