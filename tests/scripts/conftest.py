"""A tiny baselines-only run folder, as ``compare.py --no-train`` would leave it, for the what-if scripts."""

from __future__ import annotations

import pytest

from agents.policies import RuleParams
from agents.results import RunFolder, write_baselines
from envs.config import load_config


@pytest.fixture
def baselines_run(tmp_path):
    run = RunFolder.create(tmp_path / "results", "tiny")
    run.write_config(load_config("wechat", {"env.horizon": 4}))
    run.write_seeds(train=[0], tune=[1, 2], eval=[3, 4])
    write_baselines(run, 1.5, RuleParams(good_months=2))
    return run.path


@pytest.fixture(scope="session")
def load_script():
    """``load_script("whatif.py")``: a script imported as a module, to call its ``main`` in process."""
    import importlib.util
    from pathlib import Path

    scripts = Path(__file__).resolve().parents[2] / "scripts"

    def load(name: str):
        spec = importlib.util.spec_from_file_location(f"script_{name.removesuffix('.py')}", scripts / name)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load
