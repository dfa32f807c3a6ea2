"""Scripted Breakout expert and the §5.1 static dataset (EDM vs DDPM world models).

The paper's static Breakout dataset came from an unpublished model-free agent. This stand-in is a
controller that reads the game state from the console RAM and moves the paddle under the predicted
landing point of the ball. RAM addresses, found empirically against the rendered 210x160 screen
(tests/test_breakout_expert.py checks them):

- RAM[99]  ball x: screen column of the ball's left pixel + 49 (the ball is 2 pixels wide)
- RAM[101] ball y: screen row of the ball's top pixel - 9; 0 while no ball is in play (press FIRE)
- RAM[72]  paddle x: screen column of the paddle's left pixel + 47 (the paddle is 16 pixels wide)

The dataset is played in the *training* env (`make_env(..., train=True)`): episodes end at every
life loss, exactly like the replay that DIAMOND's world model trains on, while returns are also
summed over whole games to report the expert's score.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from tqdm import tqdm

from diamond.loop.data import DATASET_SUMMARY as SUMMARY_FILE
from diamond.loop.data import ReplayBuffer, reuse_dataset
from diamond.loop.envs import AtariPreprocess, make_env
from diamond.run.io import atomic_write_json
from evaluation.objects import RAM_BALL_X, RAM_BALL_Y, RAM_PADDLE_X  # Breakout's RAM map lives with the read-out

BALL_CENTER_OFFSET = -48  # RAM[99] - 48 = screen column of the ball centre
PADDLE_CENTER_OFFSET = -39  # RAM[72] - 39 = screen column of the paddle centre
PADDLE_HIT_Y = 178  # RAM[101] where a falling ball meets the paddle (bounces seen at 175..182)
BALL_X_RANGE = (57, 199)  # RAM[99] between the side walls; the ball reflects there
PADDLE_CARRY = 6  # the paddle keeps sliding ~6-10 columns the step after a move (measured); aim with it


def _reflect(x: float, lo: float, hi: float) -> float:
    """Fold a straight-line x position back into [lo, hi] as the side walls bounce the ball."""
    width = hi - lo
    x = (x - lo) % (2 * width)
    return lo + (x if x <= width else 2 * width - x)


class BreakoutExpert:
    """RAM-reading paddle controller; with probability `epsilon` it plays a uniform random action."""

    def __init__(self, action_meanings: Sequence[str], *, epsilon: float = 0.0,
                 rng: np.random.Generator | None = None, deadband: int = 6) -> None:
        if not 0.0 <= epsilon <= 1.0:
            raise ValueError(f"epsilon must be in [0, 1], got {epsilon}.")
        meanings = list(action_meanings)
        missing = {"NOOP", "FIRE", "RIGHT", "LEFT"} - set(meanings)
        if missing:
            raise ValueError(f"BreakoutExpert needs the actions NOOP, FIRE, RIGHT, LEFT; {sorted(missing)} missing "
                             f"from {meanings}.")
        self.noop, self.fire, self.right, self.left = (meanings.index(m) for m in ("NOOP", "FIRE", "RIGHT", "LEFT"))
        self.num_actions = len(meanings)
        self.epsilon = epsilon
        self.rng = rng if rng is not None else np.random.default_rng()
        self.deadband = deadband
        self._prev_ball: tuple[int, int] | None = None
        self._last_dir = 0  # +1 / -1 if the previous action moved the paddle right / left

    @classmethod
    def for_env(cls, env: AtariPreprocess, **kwargs) -> BreakoutExpert:
        return cls(env.unwrapped.get_action_meanings(), **kwargs)

    def reset(self) -> None:
        """Forget the previous ball position and move (call at every episode start)."""
        self._prev_ball = None
        self._last_dir = 0

    def target_x(self, ball_x: int, ball_y: int) -> float:
        """Screen column the paddle centre should reach: the landing point of a falling ball, else the ball."""
        prev, self._prev_ball = self._prev_ball, (ball_x, ball_y)
        if prev is not None and prev[1] > 0:
            vx, vy = ball_x - prev[0], ball_y - prev[1]
            if vy > 0 and ball_y < PADDLE_HIT_Y:
                steps = (PADDLE_HIT_Y - ball_y) / vy
                ball_x = _reflect(ball_x + vx * steps, *BALL_X_RANGE)
        return ball_x + BALL_CENTER_OFFSET

    def __call__(self, ram: np.ndarray) -> int:
        ball_x, ball_y, paddle_x = int(ram[RAM_BALL_X]), int(ram[RAM_BALL_Y]), int(ram[RAM_PADDLE_X])
        if ball_y == 0:  # no ball in play: launch one
            self._prev_ball = None
            action = self.fire
        else:
            paddle = paddle_x + PADDLE_CENTER_OFFSET + PADDLE_CARRY * self._last_dir
            offset = self.target_x(ball_x, ball_y) - paddle
            action = self.right if offset > self.deadband else self.left if offset < -self.deadband else self.noop
        if self.rng.random() < self.epsilon:
            action = int(self.rng.integers(self.num_actions))
        self._last_dir = 1 if action == self.right else -1 if action == self.left else 0
        return action


def play_full_games(env: AtariPreprocess, policy: Callable[[AtariPreprocess], int], num_games: int,
                    on_episode_start: Callable[[], None] = lambda: None) -> list[float]:
    """Raw return of `num_games` whole games (a train env's life-loss episodes are summed)."""
    returns, total = [], 0.0
    env.reset()
    on_episode_start()
    while len(returns) < num_games:
        _, reward, terminated, truncated, info = env.step(policy(env))
        total += reward
        if terminated or truncated:
            if info["game_over"] or truncated:
                returns.append(total)
                total = 0.0
            env.reset()
            on_episode_start()
    return returns


def random_returns(num_games: int, seed: int) -> list[float]:
    """Uniform random policy on full Breakout games: the floor the expert must clearly beat."""
    env = make_env("Breakout", train=False, seed=seed)
    rng = np.random.default_rng(seed)
    n = int(env.action_space.n)
    return play_full_games(env, lambda _: int(rng.integers(n)), num_games)


def expert_returns(num_games: int, seed: int, epsilon: float = 0.0) -> list[float]:
    """The expert on full Breakout games (test env: no life-loss terminations)."""
    env = make_env("Breakout", train=False, seed=seed)
    expert = BreakoutExpert.for_env(env, epsilon=epsilon, rng=np.random.default_rng(seed))
    return play_full_games(env, lambda e: expert(e.ale.getRAM()), num_games, expert.reset)


def collect_static_dataset(out_dir: str | Path, num_frames: int = 100_000, seed: int = 0, epsilon: float = 0.03,
                           random_games: int = 10) -> dict:
    """Play the expert for `num_frames` agent steps into a ReplayBuffer at `out_dir`, plus summary.json.

    A directory holding a complete dataset with the same settings is reused as is (summary.json is
    written last, so its presence means the data are complete).
    """
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}.")
    out_dir = Path(out_dir)
    settings = {"game": "Breakout", "num_frames": num_frames, "seed": seed, "epsilon": epsilon,
                "random_games": random_games}
    summary = reuse_dataset(out_dir, settings)
    if summary is not None:
        return summary
    env = make_env("Breakout", train=True, seed=seed)
    expert = BreakoutExpert.for_env(env, epsilon=epsilon, rng=np.random.default_rng(seed))
    buffer = ReplayBuffer(out_dir)
    obs, _ = env.reset()
    new_episode = True
    game_returns, total = [], 0.0
    for _ in tqdm(range(num_frames), desc="breakout expert", unit="step"):
        if new_episode:  # opened lazily so the budget never ends on an empty episode
            buffer.start_episode(obs)
            expert.reset()
            new_episode = False
        action = expert(env.ale.getRAM())
        obs, reward, terminated, truncated, info = env.step(action)
        buffer.add_step(action, reward, terminated, truncated, obs)
        total += reward
        if terminated or truncated:
            if info["game_over"] or truncated:
                game_returns.append(total)
                total = 0.0
            obs, _ = env.reset()
            new_episode = True
    buffer.save()
    rand = random_returns(random_games, seed)
    summary = {
        **settings,
        "train_env": True,
        "num_steps": buffer.num_steps,
        "num_episodes": buffer.num_episodes,
        "num_full_games": len(game_returns),
        "expert_game_returns": game_returns,
        "expert_mean_return": float(np.mean(game_returns)) if game_returns else None,
        "random_game_returns": rand,
        "random_mean_return": float(np.mean(rand)),
        "ram_addresses": {"ball_x": RAM_BALL_X, "ball_y": RAM_BALL_Y, "paddle_x": RAM_PADDLE_X},
    }
    atomic_write_json(out_dir / SUMMARY_FILE, summary)
    return summary
