"""What a Breakout frame holds: bricks, paddle, ball, walls, read from the console RAM for real frames and by exact
pixel detectors from the 64x64 frames a world model generates (DESIGN.md, "What a game is made of").

Pixel distances cannot see lost objects: on the Figure 3 data an all-black playfield that keeps the walls and the
score is ×2.76 the real frames' distance to the nearest real frame, what EDM n = 1 scores at t = 1000. The state
here can: a frame without a ball has no ball.

RAM map (ALE 0.12, found and checked by stepping the emulator and comparing with the 210x160 screen;
tests/test_objects.py re-checks every address):

- RAM[72] paddle: its 16 columns are RAM[72] - 47 .. RAM[72] - 32 (centre RAM[72] - 39)
- RAM[99], RAM[101] ball: columns RAM[99] - 49, -48 and rows RAM[101] + 9 .. + 11 or + 12; RAM[101] = 0 while
  no ball is in play; a ball below the paddle's top row is lost (not in play here)
- RAM[57] lives; RAM[76], RAM[77] the score in BCD (hundreds, then tens and units)
- bricks: one bit per brick in RAM[0:36] (`BRICK_BITS`: row r from the top uses bytes 5 - r + 6 j); the screen
  follows the bit within one emulator frame (agreement 0.9996 over 12,000 expert steps)

AtariARI (Anand et al., 2019) names score = 84 and blocks_hit_count = 77 for Breakout; on this emulator RAM[77] is
the score's low BCD byte and RAM[84] is not the score.

The frame read-out works on what AtariPreprocess hands the agent (max of the last two raw frames, area-resized to
64x64): area resizing is linear, so the brick band is fitted exactly as a sum of one rendered template per brick
(least squares, rounded); the ball is the brightness left after bricks and walls (it takes the colour of the rows
it crosses), the paddle the red mass (R - G) on its rows.
"""

from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np

RAM_BALL_X, RAM_BALL_Y, RAM_PADDLE_X = 99, 101, 72  # also the scripted expert's inputs (ablations/breakout_expert.py)
RAM_LIVES, RAM_SCORE_HUNDREDS, RAM_SCORE_UNITS = 57, 76, 77
SCREEN = (210, 160)  # raw rows, columns
ROWS, COLS = 6, 18  # bricks
BRICK_TOP, BRICK_H, BRICK_LEFT, BRICK_W = 57, 6, 8, 8  # screen pixels
BRICK_COLOURS = ((200, 72, 72), (198, 108, 58), (180, 122, 48), (162, 162, 42), (72, 160, 72), (66, 72, 200))
WALL_COLOUR = 142
PLAYFIELD = (32, 189, 8, 152)  # screen rows [32, 189) and columns [8, 152) inside the walls, above the paddle
PADDLE_ROWS = (189, 193)
# (byte offset, bit) of each brick column; row r adds 5 - r to the byte (measured, see the module docstring)
_COLUMN_BITS = ((30, 6), (24, 6), (24, 4), (24, 2), (24, 0), (18, 0), (18, 2), (18, 4), (18, 6), (12, 4), (12, 6),
                (6, 6), (6, 4), (6, 2), (6, 0), (0, 0), (0, 2), (0, 4))
BRICK_BITS = np.array([[(b + 5 - r, bit) for b, bit in _COLUMN_BITS] for r in range(ROWS)])  # [6, 18, 2]
MISS_PX = 32.0  # a paddle or ball this far from the real one (screen pixels), or absent, is a miss


def _bcd(v: np.ndarray) -> np.ndarray:
    return (v >> 4) * 10 + (v & 15)


def ram_state(ram: np.ndarray) -> dict[str, np.ndarray]:
    """The game state of RAM [..., 128]: bricks [..., 6, 18], paddle and ball centres in screen pixels (NaN for no
    ball in play), lives and score. Walls and paddle are always there in the real game."""
    ram = np.asarray(ram).astype(np.int64)
    ball = (ram[..., RAM_BALL_Y] > 0) & (ram[..., RAM_BALL_Y] + 11 < PADDLE_ROWS[0])
    bytes_ = ram[..., BRICK_BITS[..., 0]]
    return {"walls": np.ones(ram.shape[:-1], bool), "paddle": np.ones(ram.shape[:-1], bool),
            "paddle_x": ram[..., RAM_PADDLE_X] - 39.0,
            "ball": ball, "ball_x": np.where(ball, ram[..., RAM_BALL_X] - 48.0, np.nan),
            "ball_y": np.where(ball, ram[..., RAM_BALL_Y] + 11.0, np.nan),
            "bricks": (bytes_ >> BRICK_BITS[..., 1]) & 1 == 1,
            "lives": ram[..., RAM_LIVES],
            "score": 100 * _bcd(ram[..., RAM_SCORE_HUNDREDS]) + _bcd(ram[..., RAM_SCORE_UNITS])}


def _resize(canvas: np.ndarray, size: int) -> np.ndarray:
    """A raw float screen [210, 160, 3] as AtariPreprocess resizes it, channels first."""
    return cv2.resize(canvas, (size, size), interpolation=cv2.INTER_AREA).transpose(2, 0, 1)


def _to_grid(rows: float, cols: float, size: int) -> tuple[float, float]:
    return rows * size / SCREEN[0], cols * size / SCREEN[1]


@lru_cache(maxsize=4)
def _walls(size: int) -> np.ndarray:
    """The walls alone (top wall and side walls, grey), resized to `size`: float [3, size, size]."""
    canvas = np.zeros((*SCREEN, 3), np.float32)
    canvas[17 : PLAYFIELD[0]] = WALL_COLOUR
    sides = canvas[PLAYFIELD[0] : PLAYFIELD[1]]
    sides[:, : PLAYFIELD[2]] = sides[:, PLAYFIELD[3] :] = WALL_COLOUR
    return _resize(canvas, size)


@lru_cache(maxsize=4)
def _brick_fit(size: int) -> tuple[slice, slice, np.ndarray, np.ndarray]:
    """The brick band's rows and columns at `size`, its templates [109, D] (108 bricks, then the walls beside them)
    and their pseudo-inverse [D, 109]."""
    r0, c0 = _to_grid(BRICK_TOP, BRICK_LEFT, size)
    r1, c1 = _to_grid(BRICK_TOP + ROWS * BRICK_H, BRICK_LEFT + COLS * BRICK_W, size)
    rows, cols = slice(int(r0) - 1, int(np.ceil(r1)) + 1), slice(int(c0), int(np.ceil(c1)))
    templates = []
    for r in range(ROWS):
        for c in range(COLS):
            canvas = np.zeros((*SCREEN, 3), np.float32)
            top, left = BRICK_TOP + r * BRICK_H, BRICK_LEFT + c * BRICK_W
            canvas[top : top + BRICK_H, left : left + BRICK_W] = BRICK_COLOURS[r]
            templates.append(_resize(canvas, size)[:, rows, cols].ravel())
    templates.append(_walls(size)[:, rows, cols].ravel())
    t = np.stack(templates)
    return rows, cols, t, np.linalg.pinv(t)


def _red(x: np.ndarray) -> np.ndarray:
    """Red mass (R - G, clipped at 0) of float frames [..., 3, h, w]: the paddle and ball are (200, 72, 72)."""
    return np.clip(x[..., 0, :, :] - x[..., 1, :, :], 0.0, None)


def _centroid(mass: np.ndarray, axis: int) -> np.ndarray:
    """Mass-weighted mean index (+ 0.5: pixel centres) along `axis` of [..., h, w]; NaN where there is no mass."""
    profile = mass.sum(axis=axis)
    total = profile.sum(-1)
    idx = np.arange(profile.shape[-1]) + 0.5
    return np.where(total > 0, (profile * idx).sum(-1) / np.maximum(total, 1e-9), np.nan)


BALL_MASS = 60.0  # brightness left after bricks and walls (summed over 64x64 cells) that makes a ball; a whole
# ball is ~140 to ~200 (it takes the colour of its rows: grey above the bricks, theirs among them, red below)
PADDLE_MASS = 300.0  # a whole paddle is ~1,000
WALL_SHARE = 0.8  # the share of wall pixels within WALL_TOL of grey 142 for the walls to be there
WALL_TOL = 40.0


def frame_state(frames: np.ndarray) -> dict[str, np.ndarray]:
    """The game state read from uint8 frames [..., 3, H, W] (square, as the agent sees them): the fields of
    `ram_state` but lives and score, positions in screen pixels."""
    x = np.asarray(frames, np.float32)
    lead, size = x.shape[:-3], x.shape[-1]
    x = x.reshape(-1, 3, size, size)
    sy, sx = SCREEN[0] / size, SCREEN[1] / size
    rows, cols, templates, pinv = _brick_fit(size)
    band = x[:, :, rows, cols].reshape(len(x), -1)
    coef = band @ pinv
    bricks = coef[:, :-1] > 0.5
    residual = x - _walls(size)
    fitted = np.concatenate([bricks.astype(np.float32), coef[:, -1:]], axis=1) @ templates
    residual[:, :, rows, cols] = (band - fitted).reshape(len(x), 3, rows.stop - rows.start, cols.stop - cols.start)

    top, bottom = int(np.ceil(PLAYFIELD[0] / sy)), int(PADDLE_ROWS[0] / sy)
    left, right = int(PLAYFIELD[2] / sx), int(np.ceil(PLAYFIELD[3] / sx))
    bright = np.clip(residual, 0.0, None).max(axis=1)[:, top:bottom, left:right]  # the ball takes its rows' colour
    peak = bright.reshape(len(x), -1).argmax(1)
    pr, pc = np.unravel_index(peak, bright.shape[1:])
    window = np.zeros_like(bright)
    for i, (r, c) in enumerate(zip(pr, pc)):  # the 3x3 cells around the brightest one
        near = (i, slice(max(r - 1, 0), r + 2), slice(max(c - 1, 0), c + 2))
        window[near] = bright[near]
    ball = window.sum((1, 2)) >= BALL_MASS
    paddle_rows = slice(int(PADDLE_ROWS[0] / sy), int(np.ceil(PADDLE_ROWS[1] / sy)))
    paddle_band = _red(x)[:, paddle_rows, left : right - 1]  # not the red block right of the playfield
    paddle = paddle_band.sum((1, 2)) >= PADDLE_MASS

    wall_mask = np.zeros((size, size), bool)
    wall_mask[int(np.ceil(17 / sy)) : int(32 / sy)] = True
    wall_mask[top:bottom, : int(PLAYFIELD[2] / sx)] = wall_mask[top:bottom, int(np.ceil(PLAYFIELD[3] / sx)) :] = True
    near_grey = (np.abs(x - WALL_COLOUR) <= WALL_TOL).all(axis=1)[:, wall_mask]
    out = {"walls": near_grey.mean(1) >= WALL_SHARE, "paddle": paddle,
           "paddle_x": np.where(paddle, (_centroid(paddle_band, 1) + left) * sx, np.nan),
           "ball": ball, "ball_x": np.where(ball, (_centroid(window, 1) + left) * sx, np.nan),
           "ball_y": np.where(ball, (_centroid(window, 2) + top) * sy, np.nan),
           "bricks": bricks.reshape(len(x), ROWS, COLS)}
    return {k: v.reshape(*lead, *v.shape[1:]) for k, v in out.items()}


def readout_accuracy(frames: np.ndarray, rams: np.ndarray, tol_px: float = 6.0) -> dict[str, float]:
    """How well `frame_state` reads real frames [N, 3, H, W] against their RAM [N, 128]: the metrics' ceiling.

    Paddle and ball positions count as right within `tol_px` screen pixels (a frame pools two raw frames 1/60 s
    apart, and the ball moves up to ~4 pixels a raw frame)."""
    seen, true = frame_state(frames), ram_state(rams)
    both = seen["ball"] & true["ball"]
    ball_dist = np.hypot(seen["ball_x"] - true["ball_x"], seen["ball_y"] - true["ball_y"])[both]
    count_error = np.abs(seen["bricks"].sum((1, 2)) - true["bricks"].sum((1, 2)))
    return {"frames": float(len(rams)), "walls": float(seen["walls"].mean()),
            "paddle": float((seen["paddle"] & (np.abs(seen["paddle_x"] - true["paddle_x"]) <= tol_px)).mean()),
            "ball_presence": float((seen["ball"] == true["ball"]).mean()),
            "ball_position": float((ball_dist <= tol_px).mean()) if both.any() else float("nan"),
            "bricks": float((seen["bricks"] == true["bricks"]).mean()),
            "brick_count_exact": float((count_error == 0).mean()), "brick_count_error": float(count_error.mean())}
