"""The parse-time module: light to import, and consistent with what it stands in for."""

import subprocess
import sys

from cnnpipe import backbones, plan


def test_importing_plan_does_not_import_torch():
    code = "import sys, cnnpipe.plan, cnnpipe.runlock; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"


def test_weight_files_match_torchvision_urls(tmp_path):
    assert set(plan.DOWNLOADABLE) == set(backbones.DOWNLOADABLE)
    for name in plan.DOWNLOADABLE:
        assert plan.weights_file(name, tmp_path) == backbones.weights_path(name, tmp_path)


def test_backbone_choices_match():
    assert set(plan.BACKBONE_CHOICES) == set(backbones.BACKBONES)
