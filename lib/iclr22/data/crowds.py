"""SIMULATED pedestrian crowds from the social force model (``pysocialforce``).

Source:  no real ETH/UCY-style pedestrian data ships in any installable package, so these
         crowds are *simulated* with PySocialForce 1.1.2 (Yuxiang Gao; the extended social
         force model of Helbing & Molnar 1995 and Moussaid et al. 2010):
         ``pip install pysocialforce==1.1.2``. Nothing is downloaded.
Licence: PySocialForce is MIT-licensed; the scenes are generated here, from a seed.
Size:    as many scenes as asked for; by default 4-10 pedestrians on a 12 m x 4 m stretch of
         corridor walking in two opposing flows, 0.4 s a step (2.5 Hz, the ETH/UCY rate).

What simulation can show: the true dynamics are known, so removing a pedestrian from a
scene and re-running it gives the *ground truth* of how much that pedestrian changes the
target's future (:func:`counterfactual_futures`), which no real data set offers. What it
cannot show: how real people behave; the social force model is a hand-written rule, and
its pedestrians walk straight to their goals unless someone is close.

PySocialForce sets its "root" logger to DEBUG and opens ``file.log`` in the working folder
when imported, and its numba-jitted helpers compile on first use (3.5 s on a quiet machine,
~14 s on a loaded one). :func:`_pysocialforce` therefore imports it once, inside a temporary
folder, detaches its log handlers, and imports it with numba's JIT switched off; the jitted
helpers are a handful of vector operations, and the one with a Python loop over rows,
``stateutils.normalize``, is replaced by :func:`_normalize`, the same computation vectorised
(a test checks the two agree). Plain NumPy then runs a batch of scenes in less time than the
compilation takes. Many scenes are simulated in *one* simulator, 10 km apart: the
social force decays as ``exp(-d / B)`` with ``B`` of a metre or two, so scenes that far apart
exert exactly zero force on each other in float64 (a test checks batched against one-by-one).
"""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

INSTALL_HINT = "pip install pysocialforce==1.1.2"
#: PyPI packages this loader reads; iclr22.colab.install_data installs them in Colab.
PIP_PACKAGES = ("pysocialforce==1.1.2",)
STEP_S = 0.4
#: Scenes in one simulator are this far apart (metres): no force crosses between them.
SCENE_SPACING_M = 10_000.0
_SCENE_TOML = """[scene]
enable_group = false
agent_radius = 0.35
step_width = {step}
max_speed_multiplier = 1.3
tau = 0.5
resolution = 10
"""
_STATE = {}


def _normalize(vecs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """pysocialforce's ``stateutils.normalize`` vectorised: (unit rows, row norms), zero rows
    stay zero. Shapes: vecs (n, d) -> (n, d), (n,)."""
    norms = np.linalg.norm(vecs, axis=-1)
    safe = np.where(norms == 0, 1.0, norms)
    return np.where(norms[:, None] == 0, 0.0, vecs / safe[:, None]), norms


def _pysocialforce():
    """(the pysocialforce module, path of our config file), imported once, quietly."""
    if "module" in _STATE:
        return _STATE["module"], _STATE["config"]
    folder = Path(tempfile.mkdtemp(prefix="iclr22-socialforce-"))
    previous = os.getcwd()
    root = logging.getLogger("root")
    level, handlers = root.level, list(root.handlers)
    try:
        import numba

        jit_was_disabled = numba.config.DISABLE_JIT
        numba.config.DISABLE_JIT = True
        import matplotlib.pyplot  # noqa: F401  (imported by pysocialforce; keeps its debug log quiet)

        os.chdir(folder)
        try:
            import pysocialforce
            from pysocialforce.utils import stateutils
        except ModuleNotFoundError as err:
            raise ModuleNotFoundError(f"pysocialforce is not installed: `{INSTALL_HINT}`") from err
        finally:
            numba.config.DISABLE_JIT = jit_was_disabled
    finally:
        os.chdir(previous)
        for handler in list(root.handlers):
            if handler not in handlers:
                root.removeHandler(handler)
                handler.close()
        root.setLevel(level)
    _STATE["original_normalize"] = stateutils.normalize
    stateutils.normalize = _normalize
    config = folder / "scene.toml"
    config.write_text(_SCENE_TOML.format(step=STEP_S), encoding="utf-8")
    _STATE.update(module=pysocialforce, config=str(config))
    return pysocialforce, str(config)


@dataclass(frozen=True)
class Crowds:
    """Simulated scenes (SIMULATED, not real pedestrians).

    Shapes: positions (num_scenes, max_agents, num_steps, 2) metres, NaN for absent agents;
    states (num_scenes, max_agents, num_steps, 7) the simulator's state (x, y, vx, vy, goal x,
    goal y, tau) at each step, for restarts; initial_speed (num_scenes, max_agents).
    """

    positions: np.ndarray
    states: np.ndarray
    initial_speed: np.ndarray
    num_agents: np.ndarray
    seed: int
    step_s: float = STEP_S
    simulated: bool = True


def _check_counts(num_scenes: int, min_agents: int, max_agents: int, num_steps: int) -> None:
    if num_scenes < 1 or num_steps < 2:
        raise ValueError(f"need >= 1 scene and >= 2 steps, got {num_scenes}, {num_steps}")
    if not 1 <= min_agents <= max_agents:
        raise ValueError(f"need 1 <= min_agents <= max_agents, got {min_agents}, {max_agents}")


def _initial_states(rng: np.random.Generator, num_agents: int, length_m: float,
                    width_m: float, num_directions: int) -> np.ndarray:
    """(num_agents, 6) x, y, vx, vy, goal x, goal y: ``num_directions`` flows (2: a corridor
    with two opposing flows; 4: crossing flows), pedestrians >= 1 m apart."""
    pos = np.empty((0, 2))
    half = np.array([length_m, width_m]) / 2
    while len(pos) < num_agents:
        p = rng.uniform(-half, half)
        if len(pos) == 0 or np.min(np.linalg.norm(pos - p, axis=1)) >= 1.0:
            pos = np.vstack([pos, p])
    heading = (rng.integers(0, num_directions, num_agents) * 2 * np.pi / num_directions
               + rng.normal(0, 0.15, num_agents))
    direction = np.stack([np.cos(heading), np.sin(heading)], axis=1)
    speed = np.clip(rng.normal(1.0, 0.15, num_agents), 0.6, 1.4)
    return np.hstack([pos, direction * speed[:, None], pos + 60.0 * direction])


def simulate_batch(initial: list[np.ndarray], num_steps: int,
                   initial_speed: list[np.ndarray] | None = None) -> list[np.ndarray]:
    """Run independent scenes side by side in one simulator.

    initial: per scene an (n_s, 6) or (n_s, 7) state; initial_speed: per scene (n_s,) speeds
    that set the desired speed (1.3 x), default the speeds of ``initial``. Returns per scene
    the (n_s, num_steps + 1, 7) states, step 0 being ``initial``.
    Shapes: see above.
    """
    psf, config = _pysocialforce()
    sizes = [len(s) for s in initial]
    offsets = np.repeat(np.arange(len(initial)) * SCENE_SPACING_M, sizes)
    state = np.concatenate([np.asarray(s, dtype=np.float64)[:, :6] for s in initial])
    state[:, [0, 4]] += offsets[:, None]  # shift x and goal x of every scene apart
    sim = psf.Simulator(state, config_file=config, obstacles=None)
    if initial_speed is not None:
        sim.peds.initial_speeds = np.concatenate(initial_speed).astype(np.float64)
        sim.peds.max_speeds = sim.peds.max_speed_multiplier * sim.peds.initial_speeds
    sim.step(num_steps)
    states, _ = sim.get_states()                          # (num_steps + 1, total, 7)
    states = np.transpose(states, (1, 0, 2)).copy()       # (total, num_steps + 1, 7)
    states[:, :, [0, 4]] -= offsets[:, None, None]
    return np.split(states, np.cumsum(sizes)[:-1])


def simulate_crowds(num_scenes: int, *, seed: int, num_steps: int = 20, warmup_steps: int = 5,
                    min_agents: int = 4, max_agents: int = 10, length_m: float = 12.0,
                    width_m: float = 4.0, num_directions: int = 2,
                    scenes_per_batch: int = 16) -> Crowds:
    """``num_scenes`` SIMULATED crowd scenes of ``num_steps`` steps after a warm-up.

    Default: a 12 m x 4 m stretch of corridor with two opposing flows, where pedestrians
    meet head on and must step aside (the social force model's classic lane formation).
    """
    _check_counts(num_scenes, min_agents, max_agents, num_steps)
    rng = np.random.default_rng(seed)
    counts = rng.integers(min_agents, max_agents + 1, num_scenes)
    if num_directions not in (2, 4):
        raise ValueError(f"num_directions must be 2 or 4, got {num_directions}")
    initial = [_initial_states(rng, int(n), length_m, width_m, num_directions) for n in counts]
    states = np.full((num_scenes, max_agents, num_steps, 7), np.nan)
    speeds = np.full((num_scenes, max_agents), np.nan)
    for start in range(0, num_scenes, scenes_per_batch):
        chunk = initial[start:start + scenes_per_batch]
        for k, run in enumerate(simulate_batch(chunk, warmup_steps + num_steps - 1)):
            s = start + k
            states[s, :len(run)] = run[:, warmup_steps:]
            speeds[s, :len(run)] = np.linalg.norm(chunk[k][:, 2:4], axis=1)
    return Crowds(states[..., :2].astype(np.float32), states, speeds, counts, seed)


def counterfactual_futures(crowds: Crowds, scene: int, removed: list[int | None], *,
                           start_step: int, num_steps: int) -> np.ndarray:
    """Restart ``scene`` at ``start_step`` with one pedestrian removed, once per entry.

    removed: indices of the pedestrian to remove (``None``: remove nobody, the factual
    restart, which reproduces the original run). Returns (len(removed), num_agents,
    num_steps, 2) positions after ``start_step``, NaN in the removed agent's row.
    Shapes: see above.
    """
    n = int(crowds.num_agents[scene])
    state = crowds.states[scene, :n, start_step]
    speed = crowds.initial_speed[scene, :n]
    keep = [np.array([a for a in range(n) if a != r]) for r in removed]
    runs = simulate_batch([state[k] for k in keep], num_steps, [speed[k] for k in keep])
    out = np.full((len(removed), n, num_steps, 2), np.nan)
    for i, (k, run) in enumerate(zip(keep, runs, strict=True)):
        out[i, k] = run[:, 1:, :2]
    return out
