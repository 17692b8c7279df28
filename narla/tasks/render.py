"""Frames of the torch-native cart-pole tasks, drawn with NumPy (no pygame, no display).

The picture follows gymnasium's cart-pole drawing: a track, the cart as a box on it and the pole as a thick bar
from the cart's pivot, angle ``theta`` measured from upright and positive to the right.
"""

from __future__ import annotations

import math

import numpy as np

HEIGHT, WIDTH = 240, 480  # pixels; multiples of 16, as video codecs want
BACKGROUND = (255, 255, 255)
TRACK = (0, 0, 0)
CART = (40, 40, 40)
POLE = (202, 152, 101)
AXLE = (129, 132, 203)


def cartpole_frame(x: float, theta: float, pole_length: float, x_limit: float) -> np.ndarray:
    """One ``[HEIGHT, WIDTH, 3]`` uint8 frame of a cart at ``x`` (m) carrying a pole of ``pole_length`` (m) at
    angle ``theta`` (rad, 0 upright). The view spans ``±1.2·x_limit`` metres."""
    scale = WIDTH / (2.4 * x_limit)  # pixels per metre
    frame = np.empty((HEIGHT, WIDTH, 3), dtype=np.uint8)
    frame[:] = BACKGROUND
    track_y = int(HEIGHT * 0.7)
    frame[track_y, :] = TRACK
    cx = WIDTH / 2 + x * scale
    cart_w, cart_h = 0.5 * scale, 0.3 * scale
    rows, cols = np.ogrid[:HEIGHT, :WIDTH]
    cart = (np.abs(cols - cx) <= cart_w / 2) & (rows >= track_y - cart_h / 2) & (rows <= track_y + cart_h / 2)
    frame[cart] = CART
    # the pole: every pixel within half its width of the segment from the pivot to the tip
    px, py = cx, track_y - cart_h / 4
    tx, ty = px + pole_length * scale * math.sin(theta), py - pole_length * scale * math.cos(theta)
    dx, dy = tx - px, ty - py
    t = np.clip(((cols - px) * dx + (rows - py) * dy) / max(dx * dx + dy * dy, 1e-9), 0.0, 1.0)
    dist2 = (cols - (px + t * dx)) ** 2 + (rows - (py + t * dy)) ** 2
    frame[dist2 <= (0.05 * scale) ** 2] = POLE
    frame[(cols - px) ** 2 + (rows - py) ** 2 <= (0.03 * scale) ** 2] = AXLE
    return frame
