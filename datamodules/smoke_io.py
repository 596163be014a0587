"""Reader of PhiFlow's own scene directories (``phi.flow.Scene``), for smoke data a user simulated elsewhere.

A scene directory ``<path>/sim_000000/`` holds one ``<field>_<frame>.npz`` per field and frame, written by
``Scene.write({"velocity": v, "smoke": s}, frame=i)``. Every ``sim_*`` scene under ``path`` becomes one trajectory:
velocity (staggered or centred) is sampled at cell centres, ``smoke`` (if written) becomes the scalar field
``density``; rows are flipped from PhiFlow's y-up arrays to this suite's convention (:mod:`symbench.fields`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from symbench import extras
from symbench.fields import FieldLayout


def read_scenes(path: str | Path) -> tuple[np.ndarray, FieldLayout]:
    """``(n_scenes, T, C, H, W)`` float32 and its layout (velocity, plus density when every scene has ``smoke``)."""
    Scene = extras.require("phi.flow", "smoke").Scene

    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(f"no PhiFlow scene directory at {root}")
    scenes = sorted(p for p in root.glob("sim_*") if p.is_dir())
    if not scenes:
        raise FileNotFoundError(f"{root} holds no PhiFlow scenes (sim_XXXXXX directories written by phi.flow.Scene)")
    trajectories = []
    with_density = all("smoke" in Scene.at(str(s)).fieldnames for s in scenes)
    for directory in scenes:
        scene = Scene.at(str(directory))
        if "velocity" not in scene.fieldnames:
            raise ValueError(f"scene {directory} has no 'velocity' field (it has {', '.join(scene.fieldnames)})")
        frames = []
        for frame in scene.complete_frames:
            v = scene.read("velocity", frame=frame).at_centers().values.numpy("vector,y,x")[:, ::-1]
            channels = [v]
            if with_density:
                channels.append(scene.read("smoke", frame=frame).values.numpy("y,x")[None, ::-1])
            frames.append(np.concatenate(channels).astype(np.float32))
        trajectories.append(np.stack(frames))
    lengths = {t.shape for t in trajectories}
    if len(lengths) != 1:
        raise ValueError(f"scenes under {root} differ in frame count or grid: {sorted(lengths)}")
    layout = FieldLayout.of("velocity:vector", *(["density:scalar"] if with_density else []))
    return np.stack(trajectories), layout
