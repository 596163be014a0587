"""Building blocks shared by the forecasting backbones (no Lightning here)."""

from symbench.layers.conv import PADDING_MODES, ConvAct, ConvNormAct, UpConvAct, same_padding
from symbench.layers.history import check_history, pad_to_multiple, stack_frames
from symbench.layers.magnitude import MagnitudeConv2d, MagnitudeConvTranspose2d
from symbench.layers.residual import ConvResidualBlock, ResidualBlock
from symbench.layers.uniform_motion import MotionComponents, UniformMotionConv2d, UniformMotionConvTranspose2d

__all__ = [
    "PADDING_MODES",
    "ConvAct",
    "ConvNormAct",
    "ConvResidualBlock",
    "ResidualBlock",
    "UpConvAct",
    "check_history",
    "pad_to_multiple",
    "same_padding",
    "stack_frames",
    "MagnitudeConv2d",
    "MagnitudeConvTranspose2d",
    "MotionComponents",
    "UniformMotionConv2d",
    "UniformMotionConvTranspose2d",
]
