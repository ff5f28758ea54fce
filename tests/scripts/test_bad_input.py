"""The bad-input audit of issue 12 kept as a test: each kind of careless or hostile input gets a clear
error naming the culprit (exit code 2 from a script, a specific exception from the env API), and a
rejected command writes nothing."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import yaml

import envs
from agents.cli import run_main
from agents.policy_export import export_policy, normalisation_arrays
from agents.results import RunFolder, collect_metadata
from envs.config import ConfigError, load_config

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = REPO / "scripts"
SMALL_BUDGET = ["--tune-seeds", "1", "--eval-seeds", "1", "--accounts", "40", "--no-progress"]


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(f"badinput_{name.removesuffix('.py')}", SCRIPTS / name)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


SCRIPT_MODULES = {name: load_script(name) for name in ("compare.py", "train.py", "evaluate.py", "benchmark.py")}


def fake_run(root: Path, name: str = "run") -> Path:
    """A finished run folder with a small untrained ppo agent in the safe format (no training needed)."""
    import torch

    run = RunFolder.create(root, name)
    with run.track(collect_metadata(["fake"])):
        run.write_config(load_config("wechat", {"env.horizon": 2}))
        run.write_seeds(train=[1000], tune=[], eval=[0])
        folder = run.agents_dir / "ppo"
        folder.mkdir(parents=True)
        generator = torch.Generator().manual_seed(0)
        state = {
            "mlp_extractor.policy_net.0.weight": torch.randn(8, 17, generator=generator),
            "mlp_extractor.policy_net.0.bias": torch.zeros(8),
            "action_net.weight": torch.randn(7, 8, generator=generator),
            "action_net.bias": torch.zeros(7),
        }
        export_policy(folder, "ppo", state, "tanh", 128)
        np.savez(folder / "vecnormalize.npz", **normalisation_arrays(np.zeros(17), np.ones(17), 1e-8, 10.0, True))
    return run.path


def run_script(name: str, argv: list[str], capsys) -> tuple[int, str]:
    module = SCRIPT_MODULES[name]
    try:
        code = run_main(module.main, argv) if name != "benchmark.py" else module.main(argv)
    except SystemExit as exit_:  # argparse's own errors
        code = exit_.code
    return code, capsys.readouterr().err


def snapshot(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


# -- script options, --set values, config files and run folders: exit 2, the culprit named ----------------------
# (script, argv, setup, fragments): "{tmp}" in argv is the test's folder, "{run}" a fake run folder in it.
def _write(path: str, text: str | bytes):
    def setup(tmp: Path) -> None:
        target = tmp / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(text if isinstance(text, bytes) else text.encode())

    return setup


def _truncate(relative: str, keep: int = 30):
    def setup(tmp: Path) -> None:
        path = tmp / "run" / relative
        path.write_bytes(path.read_bytes()[:keep])

    return setup


def _previous_file(tmp: Path) -> None:
    (tmp / "out").mkdir()
    RunFolder.create(tmp / "out", "x").finish_metadata(collect_metadata(["x"]))
    (tmp / "out" / "x.previous").write_text("a file")


def _fake_checkpoint(tmp: Path) -> None:
    folder = tmp / "out" / "r" / "agents" / "ppo"
    (folder / "checkpoints").mkdir(parents=True)
    for name in ("model_8.zip", "vecnormalize_8.npz", "constraint_8.json"):
        (folder / "checkpoints" / name).write_text("{}")
    (folder / "training.json").write_text(json.dumps({"algo": "ppo", "constraint": "pid", "seed": 1000}))
    (folder / "agent_config.yaml").write_text(yaml.safe_dump({"training": {"num_accounts": 8}}))
    RunFolder(tmp / "out" / "r").write_config(load_config("wechat"))
    (tmp / "out" / "r" / "metadata.json").write_text(json.dumps({"status": "finished"}))


def _narrow_policy(run: Path) -> None:
    # an agent trained on 16 observations (another simulator version) against today's 17
    import torch

    folder = run / "agents" / "ppo"
    state = torch.load(folder / "policy.pt", weights_only=True)
    state["hidden.0.weight"] = state["hidden.0.weight"][:, :16].clone()
    torch.save(state, folder / "policy.pt")
    np.savez(folder / "vecnormalize.npz", **normalisation_arrays(np.zeros(16), np.ones(16), 1e-8, 10.0, True))


def _edit_baselines(tmp: Path) -> None:
    (tmp / "run" / "baselines.json").write_text('{"best_static": {"x": ')


BASE_YAML = "name: mine\nproduct:\n  max_line: 1000.0\n"
SCRIPT_CASES = [
    # --set: keys, values, syntax
    ("compare.py", ["--set", "env.horizn=12"], None, ["env.horizn", "horizon"]),
    ("compare.py", ["--set", "env.horizon=-3"], None, ["env.horizon", "-3"]),
    ("compare.py", ["--set", "env.horizon=many"], None, ["env.horizon", "many"]),
    ("compare.py", ["--set", "env.horizon"], None, ["key=value"]),
    ("compare.py", ["--set", "env.horizon=[1"], None, ["env.horizon", "not valid YAML"]),
    ("compare.py", ["--set", "default.risk_intercept=.nan"], None, ["default.risk_intercept", "finite"]),
    ("compare.py", ["--set", "accounting.operating_cost=.inf"], None, ["accounting.operating_cost", "finite"]),
    ("compare.py", ["--set", "product.price_best_score=.nan"], None, ["product.price_best_score", "finite"]),
    ("compare.py", ["--set", "product.max_line=2.0e+38"], None, ["product.max_line", "allowed range"]),
    ("compare.py", ["--set", "macro.seed=18446744073709551621"], None, ["macro.seed", "allowed range"]),
    ("compare.py", ["--set", "population.income_median.tier1=-5"], None, ["income_median.tier1", "-5"]),
    ("compare.py", ["--set", "product.min_line=300000"], None, ["min_line", "max_line"]),
    ("compare.py", ["--set", "env.m3plus_cap=true"], None, ["env.m3plus_cap", "True"]),
    # presets and YAML files
    ("compare.py", ["--preset", "wechatt"], None, ["wechatt", "douyin"]),
    ("compare.py", ["--preset", "{tmp}/missing.yaml"], None, ["missing.yaml", "not found"]),
    (
        "compare.py",
        ["--preset", "{tmp}/dup.yaml"],
        _write("dup.yaml", BASE_YAML + "name: again\n"),
        ["dup.yaml", "'name' twice"],
    ),
    ("compare.py", ["--preset", "{tmp}/list.yaml"], _write("list.yaml", "- 1\n- 2\n"), ["list.yaml", "mapping"]),
    ("compare.py", ["--preset", "{tmp}/bin.yaml"], _write("bin.yaml", b"\x80\x04\x95binary"), ["bin.yaml", "UTF-8"]),
    (
        "compare.py",
        ["--preset", "{tmp}/bad.yaml"],
        _write("bad.yaml", "product: [1,\n"),
        ["bad.yaml", "not valid YAML"],
    ),
    # budgets and lists
    ("compare.py", ["--accounts", "0"], None, ["--accounts", "positive integer"]),
    ("compare.py", ["--accounts", "1000000000000"], None, ["--accounts", "at most"]),
    ("compare.py", ["--eval-seeds", "-1"], None, ["--eval-seeds"]),
    ("compare.py", ["--seed", "-1"], None, ["--seed"]),
    ("compare.py", ["--seed", "4294967296"], None, ["--seed", "2**32"]),
    ("compare.py", ["--seed", "4294967290", "--eval-seeds", "10"], None, ["--seed 4294967290", "--eval-seeds"]),
    ("compare.py", ["--algos", "ppo,xgboost"], None, ["xgboost", "allowed"]),
    # run names and --out
    ("compare.py", ["--name", ""], None, ["--name", "empty"]),
    ("compare.py", ["--name", "../escape", "--overwrite"], None, ["--name", "separators"]),
    ("compare.py", ["--name", ".", "--overwrite"], None, ["--name", "'.'"]),
    ("compare.py", ["--name", "..", "--overwrite"], None, ["--name", "'..'"]),
    ("compare.py", ["--name", "two\nlines"], None, ["--name", "control character"]),
    ("compare.py", ["--name", "/tmp/abs", "--overwrite"], None, ["--name", "separators"]),
    ("compare.py", ["--out", "{tmp}/file"], _write("file", "x"), ["--out", "not a folder"]),
    (
        "compare.py",
        ["--name", "x", "--overwrite", "--out", "{tmp}/out"],
        _previous_file,
        ["x.previous", "not a plain folder"],
    ),
    # option combinations
    ("compare.py", ["--agent-set", "gamma=0.9"], None, ["--agent-set", "--no-train"]),
    ("compare.py", ["--resume", "--name", "nope", "--algos", "ppo"], None, ["--resume", "not found"]),
    ("compare.py", ["--load", "{tmp}/nope", "--algos", "ppo"], None, ["--load", "not found"]),
    (
        "compare.py",
        ["--load", "{run}", "--name", "run", "--out", "{tmp}", "--overwrite"],
        None,
        ["--load", "cannot be replaced"],
    ),
    ("compare.py", ["--load", "{run}", "--algos", "a2c", "--out", "{tmp}/out"], None, ["a2c", "policy.pt"]),
    # train.py
    ("train.py", ["--agent-set", "hyperparameters.gama=0.9"], None, ["hyperparameters.gama"]),
    (
        "train.py",
        ["--agent-set", "batch_size=4096", "--agent-set", "n_steps=8", "--accounts", "8"],
        None,
        ["batch_size", "rollout"],
    ),
    ("train.py", ["--set", "env.m3plus_cap=0"], None, ["env.m3plus_cap", "(0, 1)"]),
    ("train.py", ["--resume"], None, ["--resume needs the --name"]),
    (
        "train.py",
        ["--resume", "--name", "r", "--algo", "sac", "--out", "{tmp}/out"],
        _fake_checkpoint,
        ["nothing to resume", "--algo"],
    ),
    (
        "train.py",
        ["--resume", "--name", "r", "--seed", "5", "--out", "{tmp}/out"],
        _fake_checkpoint,
        ["seed=1000", "not 5"],
    ),
    ("train.py", ["--name", "a/b"], None, ["--name", "separators"]),
    # evaluate.py
    ("evaluate.py", ["--run", "{tmp}/missing"], None, ["--run", "not found"]),
    ("evaluate.py", ["--preset", "wechat", "--baselines", "best_static"], None, ["--best-static"]),
    (
        "evaluate.py",
        ["--preset", "wechat", "--baselines", "rule", "--rule-params", "{tmp}/rule.yaml"],
        _write("rule.yaml", "raise_by: 1.5\n"),
        ["raise_by", "allowed"],
    ),
    (
        "evaluate.py",
        ["--preset", "wechat", "--baselines", "rule", "--rule-params", "{tmp}/none.json"],
        None,
        ["--rule-params", "none.json"],
    ),
    ("evaluate.py", ["--preset", "wechat", "--algos", "ppo"], None, ["--algos", "--run"]),
    (
        "evaluate.py",
        ["--preset", "wechat", "--baselines", "best_static", "--best-static", "nan"],
        None,
        ["--best-static"],
    ),
    (
        "evaluate.py",
        ["--preset", "wechat", "--baselines", "rule", "--rule-params", "{tmp}/bin.yaml"],
        _write("bin.yaml", b"\x80\x81"),
        ["--rule-params", "bin.yaml"],
    ),
    (
        "evaluate.py",
        ["--preset", "wechat", "--baselines", "rule", "--rule-params", "{tmp}/twice.yaml"],
        _write("twice.yaml", "good_months: 3\ngood_months: 4\n"),
        ["twice.yaml", "'good_months' twice"],
    ),
    ("evaluate.py", ["--run", "{run}"], _truncate("seeds.json"), ["seeds.json", "not valid JSON"]),
    ("evaluate.py", ["--run", "{run}"], _write("run/seeds.json", '{"train": [-1]}'), ["seeds.json", "'train'"]),
    ("evaluate.py", ["--run", "{run}"], _truncate("agents/ppo/policy.pt"), ["policy.pt"]),
    ("evaluate.py", ["--run", "{run}"], _truncate("agents/ppo/vecnormalize.npz"), ["vecnormalize.npz"]),
    ("evaluate.py", ["--run", "{run}"], _write("run/agents/ppo/policy.json", "[]"), ["policy.json", "JSON object"]),
    ("evaluate.py", ["--run", "{run}"], _write("run/agents/ppo/progress.csv", b"\x80\x04binary"), ["progress.csv"]),
    ("evaluate.py", ["--run", "{run}"], _edit_baselines, ["baselines.json", "not valid JSON"]),
    ("evaluate.py", ["--run", "{run}"], _write("run/config.yaml", "env: {horizon: 0}\n"), ["config.yaml"]),
    ("evaluate.py", ["--run", "{run}", "--name", ".."], None, ["--name", "'..'"]),
    ("evaluate.py", ["--run", "{run}"], lambda tmp: _narrow_policy(tmp / "run"), ["--run", "shape (16,)", "(17,)"]),
    # benchmark.py
    ("benchmark.py", ["--repeats", "0"], None, ["--repeats"]),
    ("benchmark.py", ["--write", "{tmp}"], None, ["--write"]),
    ("benchmark.py", ["--risk-policy", "{tmp}/none.json"], None, ["--risk-policy", "none.json"]),
    ("benchmark.py", ["--risk-policy", "{tmp}"], None, ["--risk-policy", "risk_policy.json"]),  # a folder without one
    ("benchmark.py", ["--risk-policy", "{tmp}/r.json"], _write("r.json", '{"model": {}}'), ["r.json", "risk policy"]),
]


@pytest.mark.parametrize(
    "script, argv, setup, fragments", SCRIPT_CASES, ids=[f"{c[0]}:{' '.join(c[1])[:50]}" for c in SCRIPT_CASES]
)
def test_bad_script_input_exits_2_naming_the_culprit(script, argv, setup, fragments, tmp_path, capsys):
    if any("{run}" in a for a in argv):
        fake_run(tmp_path)
    if setup is not None:
        setup(tmp_path)
    argv = [a.replace("{tmp}", str(tmp_path)).replace("{run}", str(tmp_path / "run")) for a in argv]
    if script in ("compare.py", "evaluate.py", "train.py") and "--out" not in argv:
        argv += ["--out", str(tmp_path / "out")]
    if script == "evaluate.py" and "--baselines" not in argv and "--preset" not in argv:
        argv += ["--baselines", "static_hold"]
    if script == "compare.py":  # a small budget first: the case's own options come after it and win
        argv = [*SMALL_BUDGET, *([] if {"--load", "--resume"} & set(argv) else ["--no-train"]), *argv]
    before = snapshot(tmp_path)
    code, err = run_script(script, argv, capsys)
    assert code == 2, err
    assert "error:" in err and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in err, (fragment, err)
    assert snapshot(tmp_path) == before  # a rejected command creates, moves and deletes nothing


def test_failed_resume_keeps_the_finished_record(tmp_path, capsys):
    _fake_checkpoint(tmp_path)
    metadata = tmp_path / "out" / "r" / "metadata.json"
    before = metadata.read_text()
    code, _ = run_script(
        "train.py", ["--resume", "--name", "r", "--algo", "sac", "--out", str(tmp_path / "out")], capsys
    )
    assert code == 2 and metadata.read_text() == before


# -- the env API: the same rule in both faces ------------------------------------------------------------------
def single_env(**overrides):
    env = envs.CreditLineEnv(**overrides)
    env.reset(seed=0)
    return env


ENV_CASES = [
    ("action '3'", lambda: single_env().step("3"), TypeError, "discrete actions"),
    ("action None", lambda: single_env().step(None), TypeError, "object"),
    ("action True", lambda: single_env().step(True), TypeError, "bool"),
    ("action complex", lambda: single_env().step(1 + 0j), TypeError, "complex"),
    ("action 7", lambda: single_env().step(7), ValueError, "[0, 6]"),
    ("action -1", lambda: single_env().step(-1), ValueError, "[0, 6]"),
    ("action 2.5", lambda: single_env().step(2.5), ValueError, "integers"),
    ("two actions, one account", lambda: single_env().step([1, 2]), ValueError, "one action"),
    ("continuous nan", lambda: _continuous().step(np.array([np.nan])), ValueError, "finite"),
    ("continuous string", lambda: _continuous().step("up"), TypeError, "continuous actions"),
    ("portfolio action strings", lambda: _portfolio().step(np.array(["1"] * 3)), TypeError, "discrete actions"),
    ("portfolio action bools", lambda: _portfolio().step(np.ones(3, dtype=bool)), TypeError, "bool"),
    ("portfolio too few actions", lambda: _portfolio().step(np.zeros(2, dtype=int)), ValueError, "expected 3"),
    ("portfolio seed -1", lambda: envs.make_portfolio("wechat", 3, seed=-1), ValueError, "seed"),
    ("portfolio seed 1.5", lambda: envs.make_portfolio("wechat", 3, seed=1.5), TypeError, "seed"),
    ("portfolio seed 2**64+5", lambda: envs.make_portfolio("wechat", 3, seed=2**64 + 5), ValueError, "seed"),
    ("portfolio seed True", lambda: envs.make_portfolio("wechat", 3, seed=True), TypeError, "seed"),
    ("env seed -1", lambda: envs.CreditLineEnv().reset(seed=-1), ValueError, "seed"),
    ("env seed 2**64+5", lambda: envs.CreditLineEnv().reset(seed=2**64 + 5), ValueError, "seed"),
    ("env seed 1.5", lambda: envs.CreditLineEnv().reset(seed=1.5), TypeError, "seed"),
    ("num_accounts True", lambda: envs.make_portfolio("wechat", True), ValueError, "num_accounts"),
    ("num_accounts 0", lambda: envs.make_portfolio("wechat", 0), ValueError, "num_accounts"),
    ("num_accounts 10**12", lambda: envs.make_portfolio("wechat", 10**12), ValueError, "num_accounts"),
    ("num_accounts 2.0", lambda: envs.make_portfolio("wechat", 2.0), ValueError, "num_accounts"),
    ("step after the end", lambda: _ended().step(3), RuntimeError, "reset()"),
    ("step before reset", lambda: envs.CreditLineEnv().step(3), RuntimeError, "reset()"),
    ("unknown override", lambda: envs.make_portfolio("wechat", 3, **{"env.horizn": 2}), ConfigError, "env.horizn"),
    ("override nan", lambda: envs.CreditLineEnv(**{"default.risk_slope": float("nan")}), ConfigError, "risk_slope"),
]


def _continuous():
    env = envs.CreditLineContinuousEnv()
    env.reset(seed=0)
    return env


def _portfolio():
    venv = envs.make_portfolio("wechat", 3, seed=0)
    venv.reset()
    return venv


def _ended():
    env = single_env(**{"env.horizon": 1})
    *_, terminated, truncated, _ = env.step(3)
    assert terminated or truncated
    return env


@pytest.mark.parametrize("what, call, error, fragment", ENV_CASES, ids=[c[0] for c in ENV_CASES])
def test_bad_env_input_raises_naming_the_culprit(what, call, error, fragment):
    with pytest.raises(error) as raised:
        call()
    assert fragment in str(raised.value), str(raised.value)


def test_the_audit_keeps_at_least_40_kinds():
    assert len(SCRIPT_CASES) + len(ENV_CASES) >= 40


def test_seeds_do_not_wrap_around():
    # seed 5 and 2**64 + 5 were the same account: the second is refused, and the largest seed is accepted
    envs.make_portfolio("wechat", 2, seed=envs.actions.MAX_SEED).reset()
    envs.CreditLineEnv().reset(seed=envs.actions.MAX_SEED)
    with pytest.raises(ValueError):
        envs.CreditLineEnv().reset(seed=envs.actions.MAX_SEED + 1)


def test_reset_info_has_the_keys_of_a_step_info():
    env = envs.CreditLineEnv()
    _, reset_info = env.reset(seed=0)
    *_, step_info = env.step(3)
    assert set(reset_info) == set(step_info)
    assert set(reset_info["reward_components"]) == set(step_info["reward_components"])
    assert all(v == 0.0 for v in reset_info["reward_components"].values()) and reset_info["cost"] == 0.0
    # the portfolio's last_info likewise
    venv = envs.make_portfolio("wechat", 4, seed=0)
    venv.reset()
    at_reset = venv.last_info
    venv.step(np.full(4, 3))
    assert set(at_reset) == set(venv.last_info)
    assert set(at_reset["reward_components"]) == set(venv.last_info["reward_components"])
    assert all(np.all(v == 0.0) for v in at_reset["reward_components"].values())


# -- defect 9: messages that point the right way ----------------------------------------------------------------
def test_evaluate_suggests_only_options_it_has(tmp_path, capsys):
    (tmp_path / "out" / "taken").mkdir(parents=True)
    argv = ["--preset", "wechat", "--baselines", "static_hold", "--out", str(tmp_path / "out"), "--name", "taken"]
    code, err = run_script("evaluate.py", [*argv, "--accounts", "20", "--eval-seeds", "1", "--no-progress"], capsys)
    assert code == 2 and "already exists" in err and "--overwrite" in err
    assert "--resume" not in err  # evaluate.py has no --resume


def test_resume_accepts_agent_settings_equal_to_the_saved_ones(tmp_path):
    from agents.agent_config import load_agent_config
    from agents.atomic_io import write_yaml

    compare = SCRIPT_MODULES["compare.py"]
    saved = load_agent_config("ppo", "wechat", {"n_steps": 8})
    write_yaml(tmp_path / "agents" / "ppo" / "agent_config.yaml", saved.to_dict())
    assert (
        compare._same_as_saved(tmp_path, "ppo", {"n_steps": 8, "hyperparameters.gamma": saved.hyperparameters.gamma})
        == {}
    )
    with pytest.raises(ValueError, match="hyperparameters.n_steps"):
        compare._same_as_saved(tmp_path, "ppo", {"n_steps": 16})
