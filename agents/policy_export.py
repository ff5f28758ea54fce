"""A trained agent's actor in files that run no code when read, and a policy that acts from them.

SB3's ``model.zip`` unpickles some of its entries when loaded, and a pickled ``VecNormalize`` is code, so
neither is safe to open when a run folder comes from someone else. A trained agent is therefore also
written as three data files in ``agents/<algo>/``:

    policy.pt          the actor's weights: a torch ``state_dict`` of plain tensors, read with
                       ``torch.load(weights_only=True)``: hidden.<i>.weight/bias, out.weight/bias
    vecnormalize.npz   the observation statistics (mean, var, epsilon, clip_obs), read with
                       ``np.load(allow_pickle=False)``
    policy.json        what the weights mean: algorithm, activation, sizes, how an action is chosen

:class:`ExportedPolicy` runs the actor from them with SB3's ``predict`` signature, without SB3 and without
unpickling anything. Its deterministic actions are SB3's: the same normalisation, the same float32 layers,
argmax of the logits (PPO, A2C) or Q-values (DQN), ``tanh`` of the mean (SAC, on a Box(-1, 1) space). It
acts on a whole book at once, in chunks of bounded memory, without SB3's per-call checks and conversions
(the 1M-account benchmark, issue 9 item 6). :meth:`ExportedPolicy.from_model` builds the same actor from
an in-memory SB3 model and its ``VecNormalize``, with nothing written.
"""

from __future__ import annotations

import json
import pickle
import threading
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

import numba
import numpy as np

POLICY_FILE = "policy.pt"
NORMALISATION_FILE = "vecnormalize.npz"
POLICY_METADATA_FILE = "policy.json"
FORMAT_VERSION = 1
ACTIVATIONS = ("tanh", "relu")
ALGORITHMS = ("ppo", "a2c", "dqn", "sac")
_CHUNK = 262_144  # accounts per forward pass: bounds memory (64 MiB per 64-wide layer); measured faster than 65,536
# Where SB3 keeps each algorithm's actor: the hidden layers' prefix and the output layer.
_ACTOR_LAYERS = {
    "ppo": ("mlp_extractor.policy_net.", "action_net."),
    "a2c": ("mlp_extractor.policy_net.", "action_net."),
    "dqn": ("q_net.q_net.", None),  # the last layer of q_net is the output
    "sac": ("actor.latent_pi.", "actor.mu."),
}


# -- writing (at the end of training; needs the SB3 model) ---------------------------------------------------
def actor_state(algo: str, policy_state: Mapping[str, Any]) -> dict[str, Any]:
    """The actor's tensors of an SB3 policy ``state_dict``, renamed hidden.<i>.* and out.*."""
    hidden_prefix, out_prefix = _ACTOR_LAYERS[algo]
    indices = sorted({int(k[len(hidden_prefix) :].split(".")[0]) for k in policy_state if k.startswith(hidden_prefix)})
    if out_prefix is None:  # DQN: the output layer is the last Linear of the hidden Sequential
        *indices, last = indices
        out_prefix = f"{hidden_prefix}{last}."
    state = {}
    for i, index in enumerate(indices):
        for part in ("weight", "bias"):
            state[f"hidden.{i}.{part}"] = policy_state[f"{hidden_prefix}{index}.{part}"].detach().clone().cpu()
    for part in ("weight", "bias"):
        state[f"out.{part}"] = policy_state[f"{out_prefix}{part}"].detach().clone().cpu()
    return state


def export_policy(
    folder: str | Path,
    algo: str,
    policy_state: Mapping[str, Any],
    activation: str,
    num_timesteps: int,
) -> None:
    """Write ``policy.pt`` and ``policy.json``; ``vecnormalize.npz`` is written by training with
    :func:`normalisation_arrays` (it holds the return statistics a resumed run needs too)."""
    import io

    import torch

    from agents.atomic_io import atomic_write, write_json

    folder = Path(folder)
    state = actor_state(algo, policy_state)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write(folder / POLICY_FILE, lambda f: _write_all(f, buffer.getvalue()))
    write_json(
        folder / POLICY_METADATA_FILE,
        {
            "format": FORMAT_VERSION,
            "algo": algo,
            "activation": activation,
            "action": "tanh" if algo == "sac" else "argmax",
            "observation_dim": int(state["hidden.0.weight"].shape[1] if "hidden.0.weight" in state else 0),
            "num_timesteps": int(num_timesteps),
        },
    )


def _write_all(handle: IO[bytes], data: bytes) -> None:
    handle.write(data)


def normalisation_arrays(
    obs_mean: np.ndarray, obs_var: np.ndarray, epsilon: float, clip_obs: float, norm_obs: bool
) -> dict[str, Any]:
    """The arrays of ``vecnormalize.npz`` that :class:`ExportedPolicy` reads (VecNormalize's own names)."""
    return {
        "mean": np.asarray(obs_mean, dtype=np.float64),
        "var": np.asarray(obs_var, dtype=np.float64),
        "epsilon": np.float64(epsilon),
        "clip_obs": np.float64(clip_obs),
        "norm_obs": np.bool_(norm_obs),
    }


# Scratch buffers of the forward pass, shared by every ExportedPolicy of the process and kept between calls
# (a 1M-account book's month is four chunks: fresh buffers would page-fault ~200 MB each month); one call
# uses them at a time (the lock).
_SCRATCH: dict[str, Any] = {}
_SCRATCH_LOCK = threading.Lock()


def _scratch(name: str, shape: tuple[int, int], dtype: Any = np.float64, torch_buffer: bool = False) -> Any:
    """The kept buffer ``name`` with at least ``shape[0]`` rows of ``shape[1]`` (reallocated when smaller or
    of another width); a torch tensor (64-byte aligned, as torch's own outputs) when ``torch_buffer``."""
    buffer = _SCRATCH.get(name)
    if (
        buffer is None
        or buffer.shape[0] < shape[0]
        or buffer.shape[1] != shape[1]
        or (not torch_buffer and buffer.dtype != dtype)
    ):
        if torch_buffer:
            import torch

            buffer = torch.empty(shape, dtype=torch.float32)
        else:
            buffer = np.empty(shape, dtype=dtype)
        _SCRATCH[name] = buffer
    return buffer


@numba.njit(cache=True, nogil=True, boundscheck=False)
def _normalise_rows(
    obs: np.ndarray,  # (n, n_obs) raw observations, float32 or float64
    index: np.ndarray,  # int64 rows of obs to take (empty: obs's own rows)
    start: int,
    mean: np.ndarray,  # (n_obs,) float64
    scale: np.ndarray,  # (n_obs,) float64
    clip: float,
    out: np.ndarray,  # (m, n_obs) float32: rows start .. start + m of obs[index]
) -> None:
    """ExportedPolicy._normalize_into of the gathered rows in one pass: the observation as float32 (as
    ``np.asarray(raw, dtype=np.float32)``), then in float64 ``(x - mean) / scale``, clipped as np.clip
    (max with -clip, then min with clip; NaN stays NaN), cast to float32: the same IEEE operations in the
    same order, so the same bits."""
    for j in range(out.shape[0]):
        r = index[start + j] if index.shape[0] else start + j
        for k in range(out.shape[1]):
            x = (np.float64(np.float32(obs[r, k])) - mean[k]) / scale[k]
            x = -clip if x <= -clip else x
            out[j, k] = np.float32(clip if x >= clip else x)


# -- reading (evaluation; runs no code from the files) ----------------------------------------------------------
class ExportedPolicy:
    """A trained agent read from ``policy.pt``, ``vecnormalize.npz`` and ``policy.json``; acts on raw observations.

    Args:
        folder: the agent's folder, ``<run>/agents/<algo>/``.

    Raises:
        FileNotFoundError: a file is missing. ``ValueError``: a file is not what it should be (the message
        names it); a pickle payload in any of them is refused, never executed.
    """

    rowwise = True  # an account's action depends on its own observation only (agents.cohort acts on a subset)

    def __init__(self, folder: str | Path):
        folder = Path(folder)
        meta = _read_metadata(folder / POLICY_METADATA_FILE)
        layers = _read_layers(folder / POLICY_FILE)
        stats = _read_normalisation(folder / NORMALISATION_FILE)
        continuous = meta["action"] == "tanh"
        self._setup(meta["algo"], continuous, meta["activation"], layers, stats, meta["num_timesteps"], folder)

    @classmethod
    def from_model(cls, algo: str, model: Any, vecnormalize: Any, activation: str) -> ExportedPolicy:
        """The actor of an in-memory SB3 ``model`` with the statistics of its ``VecNormalize`` (nothing written).

        ``activation``: ``policy.activation`` of the agent's config (``tanh`` or ``relu``).
        """
        if algo not in _ACTOR_LAYERS:
            raise ValueError(f"unknown algo {algo!r}; known: {', '.join(_ACTOR_LAYERS)}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; known: {', '.join(ACTIVATIONS)}")
        obs = vecnormalize.obs_rms
        stats = normalisation_arrays(
            obs.mean, obs.var, vecnormalize.epsilon, vecnormalize.clip_obs, vecnormalize.norm_obs
        )
        layers = _check_layers(actor_state(algo, model.policy.state_dict()), "the model's actor")
        policy = cls.__new__(cls)
        policy._setup(algo, algo == "sac", activation, layers, stats, int(model.num_timesteps), None)
        return policy

    def _setup(
        self,
        algo: str,
        continuous: bool,  # tanh of the output (SAC), else its argmax
        activation: str,
        layers: list[tuple[Any, Any]],
        stats: dict[str, np.ndarray],
        num_timesteps: int,
        folder: Path | None,
    ) -> None:
        import torch
        from gymnasium import spaces

        self.folder, self.algo, self.num_timesteps = folder, algo, num_timesteps
        self.continuous = continuous
        self._activation_ = {"tanh": torch.tanh_, "relu": torch.relu_}[activation]  # in place
        self._layers = layers
        n_obs, n_out = layers[0][0].shape[1], layers[-1][0].shape[0]
        where = str(folder / NORMALISATION_FILE) if folder is not None else "the VecNormalize"
        self._mean, self._scale, self._clip = _check_normalisation(stats, n_obs, where)
        self.observation_space = spaces.Box(-np.inf, np.inf, shape=(n_obs,), dtype=np.float32)
        self.action_space: spaces.Space = (
            spaces.Box(-1.0, 1.0, shape=(n_out,), dtype=np.float32) if self.continuous else spaces.Discrete(n_out)
        )

    def normalize_obs(self, observation: np.ndarray) -> np.ndarray:
        """The observation as the network saw it in training (VecNormalize's formula, float32)."""
        obs = np.asarray(observation, dtype=np.float32)
        if self._scale is None:
            return obs
        return self._normalize_into(obs, np.empty(obs.shape), np.empty(obs.shape, dtype=np.float32))

    def _normalize_into(self, obs: np.ndarray, scratch: np.ndarray, out: np.ndarray) -> np.ndarray:
        """VecNormalize's ``clip((obs - mean) / scale)`` in float64, then float32, in the given buffers
        (the same operations as a fresh expression, so the same bits, without its page-faulting temporaries)."""
        assert self._scale is not None
        np.subtract(obs, self._mean, out=scratch)
        np.divide(scratch, self._scale, out=scratch)
        np.clip(scratch, -self._clip, self._clip, out=scratch)
        out[...] = scratch
        return out

    def predict(
        self,
        observation: np.ndarray,
        state: Any = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = True,
    ) -> tuple[np.ndarray, Any]:
        """SB3's ``predict`` on raw observations of shape ``(n_obs,)`` or ``(n, n_obs)``; deterministic only."""
        if not deterministic:
            raise ValueError("an exported policy acts deterministically: call predict(..., deterministic=True)")
        obs = np.asarray(observation)
        single = obs.ndim == 1
        batch = obs.reshape(1, -1) if single else obs
        self._check_batch(batch, obs.shape)
        actions = self._actions(batch, None)
        return (actions[0] if single else actions), state

    def predict_rows(self, observation: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """The deterministic actions of ``observation[rows]`` (``rows``: int indices into the ``(n, n_obs)``
        batch), as ``predict(observation[rows])[0]`` without the copy of those rows (``agents.cohort``)."""
        obs, index = np.asarray(observation), np.asarray(rows)
        self._check_batch(obs, obs.shape)
        if (
            index.ndim != 1
            or index.dtype.kind not in "iu"
            or (index.size and not 0 <= index.min() <= index.max() < len(obs))
        ):
            raise IndexError(f"rows must be indices in [0, {len(obs)}), got {index.dtype} {index[:5]}...")
        return self._actions(obs, index.astype(np.int64, copy=False))

    def _check_batch(self, batch: np.ndarray, shape: tuple[int, ...]) -> None:
        if batch.ndim != 2 or batch.shape[1] != self.observation_space.shape[0]:
            raise ValueError(f"expected observations of shape (n, {self.observation_space.shape[0]}), got {shape}")

    def _actions(self, source: np.ndarray, index: np.ndarray | None) -> np.ndarray:
        """The actions of ``source[index]`` (None: every row), chunk by chunk, each in the same buffers, kept
        from call to call (_scratch): the normalisation and the hidden layers of a 1M-account book stay
        small, and no chunk pays for fresh (page-faulting) temporaries."""
        n = len(source) if index is None else len(index)
        with _SCRATCH_LOCK:
            rows = min(n, _CHUNK)
            chunks = [self._act(source, index, start, min(start + _CHUNK, n), rows) for start in range(0, n, _CHUNK)]
            return np.concatenate(chunks) if chunks else self._act(source, index, 0, 0, rows)

    def _act(self, source: np.ndarray, index: np.ndarray | None, start: int, stop: int, rows: int) -> np.ndarray:
        """Deterministic actions of rows ``start:stop`` of ``source[index]`` (at most ``rows``, the call's largest)."""
        import torch

        m, width = stop - start, source.shape[1]
        scale = self._scale
        if (
            scale is not None
            and self._mean.dtype == np.float64
            and scale.dtype == np.float64
            and source.dtype in (np.float32, np.float64)
        ):
            # one compiled pass: the rows gathered, normalised as _normalize_into does (the same bits)
            obs = _scratch("obs32", (rows, width), np.float32)[:m]
            none = np.zeros(0, dtype=np.int64)
            _normalise_rows(source, none if index is None else index, start, self._mean, scale, self._clip, obs)
        else:
            raw = source[start:stop] if index is None else source[index[start:stop]]
            obs = np.asarray(raw, dtype=np.float32)
            if self._scale is not None:
                obs = self._normalize_into(
                    obs, _scratch("obs64", (rows, width))[:m], _scratch("obs32", (rows, width), np.float32)[:m]
                )
        with torch.inference_mode():
            x = torch.from_numpy(obs)
            # addmm into the kept buffers is what F.linear computes (linear(x, W, b) is addmm(b, x, W.t())),
            # on the same rows at a time, so the same bits
            for i, (weight, bias) in enumerate(self._layers):
                out = _scratch(f"layer{i}", (rows, weight.shape[0]), torch_buffer=True)[:m]
                x = torch.addmm(bias, x, weight.t(), out=out)
                if i < len(self._layers) - 1:
                    self._activation_(x)  # in place: the same bits
            actions = torch.tanh(x).numpy() if self.continuous else x.argmax(dim=1).numpy()
        if self.continuous:
            # SB3 maps the squashed action onto the Box; on [-1, 1] that is the identity up to float32
            # rounding, which is kept so that the actions are SB3's to the bit.
            low, high = self.action_space.low, self.action_space.high  # type: ignore[attr-defined]
            actions = np.clip(low + (0.5 * (actions + 1.0) * (high - low)), low, high)
        return actions

    def __repr__(self) -> str:
        where = "in memory" if self.folder is None else repr(str(self.folder))
        return f"ExportedPolicy({self.algo!r}, {self.num_timesteps} timesteps, {where})"


def _read_metadata(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(meta, dict):
        raise ValueError(f"{path} must hold a JSON object")
    expected = {"format": int, "algo": str, "activation": str, "action": str, "num_timesteps": int}
    for key, kind in expected.items():
        if not isinstance(meta.get(key), kind):
            raise ValueError(f"{path}: '{key}' must be a {kind.__name__}, got {meta.get(key)!r}")
    if meta["format"] != FORMAT_VERSION:
        raise ValueError(f"{path}: format {meta['format']} is not the supported {FORMAT_VERSION}")
    if meta["algo"] not in _ACTOR_LAYERS:
        raise ValueError(f"{path}: unknown algo {meta['algo']!r}; known: {', '.join(_ACTOR_LAYERS)}")
    if meta["activation"] not in ACTIVATIONS:
        raise ValueError(f"{path}: unknown activation {meta['activation']!r}; known: {', '.join(ACTIVATIONS)}")
    if meta["action"] not in ("argmax", "tanh"):
        raise ValueError(f"{path}: 'action' must be 'argmax' or 'tanh', got {meta['action']!r}")
    return meta


def _read_layers(path: Path) -> list[tuple[Any, Any]]:
    import torch

    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"{path} is not a weights file readable without running code: {first}") from None
    return _check_layers(state, str(path))


def _check_layers(state: Any, path: str) -> list[tuple[Any, Any]]:
    """The (weight, bias) float32 layers of an actor state (hidden.<i>.*, out.*); ``path`` names it in errors."""
    import torch

    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path} must hold a state_dict of tensors")
    hidden = sorted(int(k.split(".")[1]) for k in state if k.startswith("hidden.") and k.endswith(".weight"))
    names = [f"hidden.{i}" for i in hidden] + ["out"]
    layers: list[tuple[Any, Any]] = []
    for name in names:
        weight, bias = state.get(f"{name}.weight"), state.get(f"{name}.bias")
        if weight is None or bias is None or weight.ndim != 2 or bias.shape != (weight.shape[0],):
            raise ValueError(f"{path}: layer '{name}' is missing or malformed")
        if layers and weight.shape[1] != layers[-1][0].shape[0]:
            raise ValueError(f"{path}: layer '{name}' does not fit the layer before it")
        if not (torch.isfinite(weight).all() and torch.isfinite(bias).all()):
            raise ValueError(f"{path}: layer '{name}' has non-finite weights")
        layers.append((weight.float().contiguous(), bias.float().contiguous()))
    if set(state) != {f"{n}.{p}" for n in names for p in ("weight", "bias")}:
        raise ValueError(f"{path}: unexpected entries {sorted(set(state) - {f'{n}.weight' for n in names})[:5]}")
    return layers


def _read_normalisation(path: Path) -> dict[str, np.ndarray]:
    """The arrays of :func:`normalisation_arrays` from ``path``."""
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing")
    try:
        with np.load(path, allow_pickle=False) as data:
            return {key: data[key] for key in ("mean", "var", "epsilon", "clip_obs", "norm_obs")}
    except (ValueError, OSError, KeyError, zipfile.BadZipFile, EOFError) as exc:
        raise ValueError(f"{path} is not the observation statistics of an agent: {exc}") from None


def _check_normalisation(arrays: dict[str, Any], n_obs: int, path: str) -> tuple[np.ndarray, np.ndarray | None, float]:
    """Mean, scale (None: no normalisation) and clip of the observation statistics; ``path`` names them."""
    mean, var = arrays["mean"], arrays["var"]
    if mean.shape != (n_obs,) or var.shape != (n_obs,) or mean.dtype.kind != "f" or var.dtype.kind != "f":
        raise ValueError(f"{path}: mean and var must be float arrays of shape ({n_obs},)")
    epsilon, clip = float(arrays["epsilon"]), float(arrays["clip_obs"])
    if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(var)) and np.all(var >= 0)):
        raise ValueError(f"{path}: mean and var must be finite, var >= 0")
    if not (np.isfinite(epsilon) and epsilon > 0 and clip > 0):
        raise ValueError(f"{path}: epsilon must be finite and > 0, clip_obs > 0")
    if not bool(arrays["norm_obs"]):
        return mean, None, clip
    return mean, np.sqrt(var + epsilon), clip
