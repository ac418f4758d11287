"""DP Explorer: see and steer the distortion–perception tradeoff of neural image compression."""

__version__ = "0.1.0"
