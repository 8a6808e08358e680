"""The calibration file: what the compiler refuses to read, with one line each."""

from __future__ import annotations

import pytest

from yolov3_tvm_opt.core.calibration import load_calibration
from yolov3_tvm_opt.core.errors import UserError


def test_a_file_that_is_no_calibration_is_one_line(tmp_path):
    (tmp_path / "c.json").write_text('{"format": 0}')
    with pytest.raises(UserError, match="is not a calibration file of format 1"):
        load_calibration(tmp_path / "c.json")
    (tmp_path / "empty.json").write_text('{"format": 1, "precision": "fp32", "convs": {}}')
    with pytest.raises(UserError, match="holds no activation ranges .written for precision fp32.; calibrate with target.precision: int8"):
        load_calibration(tmp_path / "empty.json")
    with pytest.raises(UserError, match="cannot read calibration file .*run `yolov3-tvm calibrate`"):
        load_calibration(tmp_path / "missing.json")
