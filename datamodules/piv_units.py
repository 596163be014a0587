"""PIV series to SI units: velocities in m/s, coordinates in m, a time axis in seconds.

* Physical units in the file (``m/s``, ``mm/s``, ``cm/s``; ``mm``, ``m``, ...; DaVis files arrive in the physical
  units of their scales, through ``lvpyio``) are converted by their factor.
* Pixel units (``pixel``/``px``: a displacement in pixels per pulse separation dT) are converted when the file
  carries the scale and dT -- TSI Insight's ``DATASETAUXDATA MicrometersPerPixelX/Y`` and ``MicrosecondsPerDeltaT``:
  ``u [m/s] = u [px] * (um per px) / (us per dT)`` (1 um/us = 1 m/s), ``x [m] = x [px] * (um per px) * 1e-6``.
  Without them the series stays in pixel units and :func:`to_physical` says so.
* The time axis: the files' own times (Tecplot ``SOLUTIONTIME``, DaVis ``AcqTimeSeries``) when every file has one,
  else ``k * frame_interval`` -- the given interval, or dT itself for a time-resolved series (each field correlates
  consecutive images, so frames are dT apart); the note says which.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from datamodules.piv_io import PIVSeries

LENGTH = {"m": 1.0, "mm": 1e-3, "cm": 1e-2, "um": 1e-6, "\u00b5m": 1e-6, "micron": 1e-6, "microns": 1e-6}
VELOCITY = {"m/s": 1.0, "m s-1": 1.0, "m.s-1": 1.0, "mm/s": 1e-3, "cm/s": 1e-2, "mm s-1": 1e-3, "cm s-1": 1e-2}
PIXEL = {"pixel", "pixels", "px", "pix", "pixel/dt", "px/dt", "pixels/dt"}


def _key(unit: str) -> str:
    return " ".join(unit.strip().lower().split())


def _aux_float(aux: dict[str, str], *names: str) -> float | None:
    lowered = {k.lower(): v for k, v in aux.items()}
    for name in names:
        try:
            value = float(lowered[name.lower()])
        except (KeyError, ValueError):
            continue
        if np.isfinite(value) and value > 0:
            return value
    return None


def to_physical(series: PIVSeries, frame_interval: float | None = None) -> tuple[PIVSeries, list[str]]:
    """``series`` in m/s and m with its time axis filled where possible, and notes (one line each) on what was
    assumed or left as it was. Raises ``ValueError`` naming the first file for units it does not know."""
    where = str(series.paths[0]) if series.paths else "PIV series"
    length, speed = _key(series.units[0]), _key(series.units[1])
    notes: list[str] = []
    dt_us = _aux_float(series.aux, "MicrosecondsPerDeltaT")
    px_x = _aux_float(series.aux, "MicrometersPerPixelX", "MicrometersPerPixel")
    px_y = _aux_float(series.aux, "MicrometersPerPixelY", "MicrometersPerPixel") or px_x
    velocity, x, y, units = series.velocity, series.x, series.y, series.units
    if speed in PIXEL or length in PIXEL:
        if dt_us is None or px_x is None:
            notes.append(f"{where}: velocities stay in pixels per dT (the file gives no MicrometersPerPixelX and "
                         "MicrosecondsPerDeltaT to convert them)")
        else:
            scale = np.array([px_x, px_y], dtype=np.float64)[:, None, None] / dt_us  # m/s per pixel displacement
            velocity = (velocity * scale).astype(np.float32) if speed in PIXEL else velocity
            if length in PIXEL:
                x, y = x * px_x * 1e-6, y * px_y * 1e-6
            units = ("m" if length in PIXEL else units[0], "m/s" if speed in PIXEL else units[1])
    length, speed = _key(units[0]), _key(units[1])
    if speed in VELOCITY:
        velocity, units = (velocity * VELOCITY[speed]).astype(np.float32), (units[0], "m/s")
    elif speed == "":
        notes.append(f"{where}: the velocity has no unit; taken as m/s")
    elif speed not in PIXEL:
        raise ValueError(f"{where}: unknown velocity unit {units[1]!r}; known: {', '.join(sorted(VELOCITY))}, pixel")
    if length in LENGTH:
        x, y, units = x * LENGTH[length], y * LENGTH[length], ("m", units[1])
    times = series.times
    if not np.isfinite(times).all():
        interval = frame_interval if frame_interval is not None else (None if dt_us is None else dt_us * 1e-6)
        if interval is None:
            notes.append(f"{where}: the files record no time and no frame interval; times stay unknown "
                         "(give --data.frame_interval)")
        else:
            times = np.arange(len(times), dtype=np.float64) * interval
            if frame_interval is None:
                notes.append(f"{where}: times are k x dT = k x {dt_us:g} us (a time-resolved series; give "
                             "--data.frame_interval otherwise)")
    return replace(series, velocity=velocity, x=x, y=y, units=units, times=times), notes
