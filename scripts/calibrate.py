"""Fit each preset's M3+ parameter to its M3+ target and print the value to put in its YAML.

The target is the preset's ``env.m3plus_cap`` (the source document's M3+ figure, or the labelled
assumption for jd). The fitted value is ``default.distress_onset_rate`` (how often the platform's borrowers
meet a shock other than job loss: distress drives default, DOMAIN: Castellanos et al.) unless
``--parameter default.risk_intercept`` is given; each preset's ``default.risk_intercept`` (the miss hazard of
borrowers not in distress) is set beside it so that the M1 -> M2 roll stays in its band. Uses the same
steady-state measurement as scripts/calibration_table.py.

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
from envs.calibration import fit_parameter  # noqa: E402
from envs.config import ConfigError, available_presets, load_config  # noqa: E402

# Bisection range and rounding of each fittable parameter.
PARAMETERS = {"default.distress_onset_rate": (0.0, 0.01, 5), "default.risk_intercept": (-9.0, -1.0, 3)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", action="append", help="preset name or YAML path (repeatable; default: all)")
    parser.add_argument(
        "--parameter", default="default.distress_onset_rate", choices=sorted(PARAMETERS), help="the value to fit"
    )
    args = parser.parse_args(argv)
    presets = args.preset or available_presets()
    low, high, digits = PARAMETERS[args.parameter]
    try:
        configs = {name: load_config(name) for name in presets}  # all valid before the long fit starts
        for name, cfg in tqdm(configs.items(), desc="fitting"):
            value, result = fit_parameter(cfg, cfg.env.m3plus_cap, args.parameter, low, high, digits=digits)
            tqdm.write(
                f"{name}: {args.parameter} = {value}  (M3+ {result.m3plus_rate:.2%}, "
                f"target {cfg.env.m3plus_cap:.2%}, M1->M2 {result.m1_to_m2:.1%})"
            )
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
