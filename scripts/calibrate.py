"""Fit each preset's ``default.risk_intercept`` to its M3+ target and print the value to put in its YAML.

The target is the preset's ``env.m3plus_cap`` (the source document's M3+ figure, or the labelled
assumption for jd). Uses the same steady-state measurement as scripts/calibration_table.py.

    python scripts/calibrate.py                 # all presets
    python scripts/calibrate.py --preset douyin
    python scripts/calibrate.py --preset my_preset.yaml
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from envs.calibration import fit_risk_intercept  # noqa: E402
from envs.config import ConfigError, available_presets, load_config  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", action="append", help="preset name or YAML path (repeatable; default: all)")
    args = parser.parse_args(argv)
    presets = args.preset or available_presets()
    try:
        configs = {name: load_config(name) for name in presets}  # all valid before the long fit starts
        for name, cfg in tqdm(configs.items(), desc="fitting"):
            value, result = fit_risk_intercept(cfg, cfg.env.m3plus_cap)
            tqdm.write(
                f"{name}: default.risk_intercept = {value}  (M3+ {result.m3plus_rate:.2%}, "
                f"target {cfg.env.m3plus_cap:.2%})"
            )
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
