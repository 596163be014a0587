"""The model registry: one name -> one factory. Adding a model is one file plus one registry line; which benchmarks
run it is said by their ``benchmarks/<name>/benchmark.yaml`` (``models:``, :func:`symbench.config.benchmark_models`).

Every registered factory is called as ``factory(in_frames=T_in, layout=FieldLayout, **hparams)`` and returns an
``nn.Module`` mapping a history ``(B, T_in, C, H, W)`` to the next frame ``(B, C, H, W)`` for the declared fields.
A model may define ``regularization_loss() -> Tensor``; the Lightning module adds ``alpha * regularization_loss()``
to the training loss when it exists (relaxed models use it). An *augmented* entry is a plain backbone plus the
datamodule options in ``data`` (``symbench bench`` applies them; with ``symbench fit`` pass ``--data.augment``).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Callable

from torch import nn

from symbench.fields import FieldLayout

ModelFactory = Callable[..., nn.Module]


@dataclass(frozen=True)
class ModelSpec:
    name: str
    target: str  # "module:attribute", imported lazily so that a heavy dependency costs nothing until used
    family: str  # "baseline" | "plain" | "equivariant" | "relaxed" | "augmented"
    description: str = ""
    defaults: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)  # datamodule options the model is defined by (Augm)
    symmetries: tuple[str, ...] = ()  # groups the model claims to be equivariant to (`symbench check-model`)
    # A plug-in's own benchmarks (it cannot edit benchmark.yaml); registry models are listed there instead.
    benchmarks: tuple[str, ...] = ()

    def factory(self) -> ModelFactory:
        module, _, attr = self.target.partition(":")
        return getattr(importlib.import_module(module), attr)


# The registry. One line per model. Order: the paper's Table 2 (each backbone, its Augm and its Equ variants); it is
# the leaderboards' model order.
_RESNET, _UNET = "symbench.models.resnet:ResNet", "symbench.models.unet:UNet"
_AUGM_GROUPS = {"um": "uniform motions", "mag": "magnitudes", "rot": "quarter turns", "scale": "scalings"}


def _augm(backbone: str, target: str, title: str) -> list[ModelSpec]:
    """The four Augm entries of a backbone: the backbone itself, trained with ``--data.augment <group>``."""
    return [ModelSpec(f"augm_{g}_{backbone}", target, "augmented",
                      f"{title} trained on the 3x training set with random {what} (ICLR 2021 Table 2 'Augm'; "
                      f"--data.augment {g})", data={"augment": g})
            for g, what in _AUGM_GROUPS.items()]


_MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in [
        ModelSpec("persistence", "symbench.models.baselines:Persistence", "baseline",
                  "repeat the last frame (no parameters; the reference every model must beat)"),
        ModelSpec("linear", "symbench.models.baselines:LinearExtrapolation", "baseline",
                  "linear extrapolation from the last two frames, 2 x_t - x_{t-1} (no parameters)"),
        ModelSpec("resnet", _RESNET, "plain",
                  "18-layer ResNet of Wang et al. (ICLR 2021), widths w,w,2w,2w,4w,4w,8w,8w"),
        *_augm("resnet", _RESNET, "ResNet"),
        ModelSpec("equ_um_resnet", "symbench.models.equ_um:EquUMResNet", "equivariant",
                  "ResNet with uniform-motion equivariant convolutions (ICLR 2021 eq. 2; Prop. 3 residuals)",
                  symmetries=("um",)),
        ModelSpec("equ_mag_resnet", "symbench.models.equ_mag:EquMagResNet", "equivariant",
                  "ResNet with magnitude-equivariant MinMax-scaled convolutions, no batch norm (ICLR 2021 eq. 4)",
                  symmetries=("mag",)),
        ModelSpec("equ_rot_resnet", "symbench.models.equ_rot:EquRotResNet", "equivariant",
                  "EquRot ResNet (ICLR 2021 sec. 3.3): C_N steerable convs (escnn, N=8), vector fields in and out",
                  symmetries=("rot",)),
        ModelSpec("equ_scale_resnet", "symbench.models.equ_scale:EquScaleResNet", "equivariant",
                  "EquScal ResNet (ICLR 2021 sec. 3.5): group correlation over 4 kernel scales x translations",
                  symmetries=("scale",)),
        ModelSpec("unet", _UNET, "plain", "13-layer U-net of Wang et al. (ICLR 2021)"),
        *_augm("unet", _UNET, "U-net"),
        ModelSpec("equ_um_unet", "symbench.models.equ_um:EquUMUNet", "equivariant",
                  "U-net with uniform-motion equivariant convolutions and mean-padded up-sampling (ICLR 2021 eq. 2)",
                  symmetries=("um",)),
        ModelSpec("equ_mag_unet", "symbench.models.equ_mag:EquMagUNet", "equivariant",
                  "U-net with magnitude-equivariant MinMax-scaled convolutions (ICLR 2021 eq. 4)",
                  symmetries=("mag",)),
        ModelSpec("equ_rot_unet", "symbench.models.equ_rot:EquRotUNet", "equivariant",
                  "EquRot U-net (ICLR 2021 sec. 3.3): C_N steerable convs, pool+conv down, transposed convs up",
                  symmetries=("rot",)),
        ModelSpec("equ_scale_unet", "symbench.models.equ_scale:EquScaleUNet", "equivariant",
                  "EquScal U-net (ICLR 2021 sec. 3.5): group correlation over 4 kernel scales x translations",
                  symmetries=("scale",)),
        # ICML 2022 smoke benchmarks (Table 1): one name per model; `symmetry` (translation / rotation / scaling)
        # picks the group, and every model is sized to ConvNet's parameter count at the same width.
        ModelSpec("mlp", "symbench.models.mlp:MLP", "plain", "multi-layer perceptron of the flattened history"),
        ModelSpec("conv", "symbench.models.conv_net:ConvNet", "plain",
                  "ConvNet: (conv, BN, ReLU) x (layers - 1) + conv (ICML 2022 sec. 5)"),
        ModelSpec("equiv", "symbench.models.equiv:Equiv", "equivariant",
                  "strictly equivariant CNN: ConvNet (translation), escnn C4 (rotation), scale group conv (scaling)"),
        ModelSpec("rpp", "symbench.models.rpp:RPP", "relaxed",
                  "Residual Pathway Priors: equivariant + penalised non-equivariant layer per block"),
        ModelSpec("combo", "symbench.models.combo:Combo", "relaxed",
                  "non-equivariant layers followed by equivariant layers (ICML 2022 sec. 3.4)"),
        ModelSpec("clcnn", "symbench.models.clcnn:CLCNN", "relaxed",
                  "locally connected CNN with the equivariant-kernel hinge loss (ICML 2022 sec. 3.4)"),
        ModelSpec("lift", "symbench.models.lift:Lift", "relaxed",
                  "Lift expansion: non-equivariant encoder tiled as invariant channels of an equivariant backbone"),
        ModelSpec("lift_rot", "symbench.models.lift:Lift", "relaxed",
                  "Lift for rotation (ICML 2022 Table 2's second Lift column): Lift on the C4 steerable backbone",
                  defaults={"symmetry": "rotation"}),
        ModelSpec("rgroup", "symbench.models.rgroup:RGroupNet", "relaxed",
                  "RGroup: relaxed group convolution, L filter banks weighted by w_l(h) (ICML 2022 eq. 4-5)"),
        ModelSpec("rsteer", "symbench.models.rsteer:RSteerNet", "relaxed",
                  "RSteer: relaxed C4-steerable convolution, escnn basis weighted by w_l(theta) (ICML 2022 eq. 7)"),
        ModelSpec("rsteer_tr", "symbench.models.rsteer:RSteerNet", "relaxed",
                  "RSteerTR: relaxed translation x relaxed rotation steerable conv, w_l(x, y) = sum_r a_r(x) "
                  "b_rl(y) (ICML 2022 eq. 8-9)", defaults={"ranks": 2}),
        ModelSpec("sesn", "symbench.models.sesn:SESN", "equivariant",
                  "SESN: scale-steerable CNN, Hermite-Gaussian basis at 4 scales (ICML 2022's Equiv for scaling)"),
        ModelSpec("rsteer_scale", "symbench.models.sesn:RSteerScale", "relaxed",
                  "RSteer for scaling: relaxed scale-steerable convolution, basis weights w_l(y) (ICML 2022 eq. 7)"),
        ModelSpec("rsteer_ts", "symbench.models.rsteer_ts:RSteerTS", "relaxed",
                  "RSteerTS: relaxed translation x relaxed scale steerable conv (ICML 2022 eq. 8-9)"),
        # ICLR 2021 appendix C (Table 5): shallow CNNs on heat diffusion, each Equ-CNN sized to the CNN's parameters.
        ModelSpec("cnn", "symbench.models.conv_net:ConvNet", "plain",
                  "shallow CNN: (conv, BN, ReLU) x (layers - 1) + conv (ICLR 2021 appendix C)"),
        ModelSpec("equ_mag_cnn", "symbench.models.equiv:Equiv", "equivariant",
                  "shallow Equ-Mag CNN: eq. 4 MinMax-scaled convs, f(a x) = a f(x)", defaults={"symmetry": "magnitude"}),
        ModelSpec("equ_rot_cnn", "symbench.models.equiv:Equiv", "equivariant",
                  "shallow Equ-Rot CNN: escnn C4 steerable convs on scalar fields", defaults={"symmetry": "rotation"}),
        ModelSpec("equ_scale_cnn", "symbench.models.equiv:Equiv", "equivariant",
                  "shallow Equ-Scale CNN: SESN scale-steerable convs (scalar power 0, the heat law)",
                  defaults={"symmetry": "scaling"}),
    ]
}


def available() -> list[str]:
    """Registered model names, in registry order."""
    return list(_MODELS)


def spec(name: str) -> ModelSpec:
    if name not in _MODELS:
        raise KeyError(f"unknown model {name!r}; available models: {', '.join(available())}")
    return _MODELS[name]


def build(name: str, *, in_frames: int, layout: FieldLayout, **hparams: Any) -> nn.Module:
    """Instantiate model ``name`` for a history of ``in_frames`` frames of the fields in ``layout``."""
    s = spec(name)
    return s.factory()(in_frames=in_frames, layout=layout, **{**s.defaults, **hparams})
