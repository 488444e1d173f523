"""An atlas of every convolution layer of ResNet-50 (53 layers, 26,560 channels) plans in
under 30 s on two cores, on the local profile and the SLURM profile: the layers' sizes come
from the network on the meta device, with no weights read. The budget is for quiet cores: the
plan's CPU time must stay under it always (Snakemake plans on one thread, so on quiet cores
wall ~ CPU), its wall time only when the machine was not busy with other work at the start
(on shared cores the wall time measures the neighbours)."""

from __future__ import annotations

import os
import resource
import time

import pytest
import yaml
from pipeline import ROOT, planned_jobs, snakemake

RESNET50_ATLAS = {"atlas": {"backbone": "resnet50", "layers": "conv", "image_size": 224, "per_job": 64}}


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@pytest.mark.slow
@pytest.mark.parametrize("profile", [(), ("--workflow-profile", str(ROOT / "profiles" / "slurm"))],
                         ids=["local", "slurm"])
def test_a_resnet50_atlas_of_every_conv_layer_plans_in_under_30_s(tmp_path, profile):
    config = tmp_path / "resnet50.yaml"
    config.write_text(yaml.safe_dump(RESNET50_ATLAS))
    load, cpu, start = os.getloadavg()[0], _children_cpu(), time.monotonic()
    result = snakemake(tmp_path / "work", "--dry-run", "atlas", *profile, "--quiet", "rules", configfiles=(config,))
    wall, cpu = time.monotonic() - start, _children_cpu() - cpu
    jobs = planned_jobs(result)
    assert jobs["atlas_dataset"] == 53 and jobs["atlas_chunk"] == 415, jobs
    print(f"resnet50 atlas plan {profile[:1] or ('local',)}: {wall:.1f} s wall, {cpu:.1f} s CPU, load {load:.1f}")
    assert cpu < 30, (wall, cpu)
    if load < (os.cpu_count() or 2) / 2:
        assert wall < 30, (wall, cpu, load)
