"""``bench --width-factor K``: every model's width times K, about K^2 the parameters for every model alike, a
configuration (and hash) of its own; bad input is one line."""

from __future__ import annotations

import pytest

from symbench import cli, models
from symbench.config import ConfigError, resolve, scale_widths
from symbench.fields import FieldLayout
from symbench.models.budget import n_params

VELOCITY = FieldLayout.of("velocity:vector")


def _params(cfg) -> int:
    return n_params(models.build(cfg.model, in_frames=cfg.data["in_frames"], layout=VELOCITY, **cfg.model_hparams))


@pytest.mark.parametrize("model", ["conv", "rgroup", "mlp"])
def test_width_factor_doubles_widths_and_about_quadruples_parameters(model):
    one = resolve("smoke-rotation", "tiny", model, 0, use_best=False)
    two = resolve("smoke-rotation", "tiny", model, 0, use_best=False, width_factor=2)
    for key in ("width", "hidden_width"):
        if key in one.model_hparams:
            assert two.model_hparams[key] == 2 * one.model_hparams[key]
    assert two.config_hash() != one.config_hash()  # its rows are never mistaken for the 1x runs
    ratio = _params(two) / _params(one)
    # convolutions: widths in and out both double; the MLP's input layer (frames x pixels -> hidden) only doubles
    assert (1.9 < ratio < 2.6) if model == "mlp" else (3.0 < ratio < 4.5), ratio


def test_bad_width_factor_is_one_line(tmp_path, capsys):
    with pytest.raises(ConfigError, match="integer >= 1"):
        resolve("smoke-rotation", "tiny", "conv", 0, use_best=False, width_factor=0)
    bare = resolve("smoke-rotation", "tiny", "conv", 0, use_best=False)
    bare.model_hparams.clear()  # e.g. a user's model configured by other names
    with pytest.raises(ConfigError, match="no width to scale"):
        scale_widths(bare, 2)
    assert cli.main(["bench", "smoke-rotation", "--preset", "tiny", "--width-factor", "0", "--root",
                     str(tmp_path), "--results", str(tmp_path / "r"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert "width-factor must be an integer >= 1" in err and len(err.splitlines()) == 1
