"""Play a trained world model in the browser, beside the real game driven by the same actions.

    python -m diamond.play --run runs/x                       # a run folder of diamond.train
    python -m diamond.play --checkpoint ckpt.pt --game Breakout --profile smoke
    python -m diamond.play --checkpoint Breakout.pt --official --game Breakout   # a released agent

It prints the address of a page (http://127.0.0.1:8000/ by default; loopback only unless --host says
otherwise) that shows the imagined game (D_θ samples each frame from the last L frames and actions, R_ψ gives
its reward and end) and the real emulator (diamond.loop.envs.make_env), both started from the same real context
and stepped with the same action, with the per-step pixel MSE between them. The first step where R_ψ predicts
the episode's end is marked on the page (imagination in training stops there); the game plays on. Keys (shown
on the page): arrows or WASD and Space make the game's action (its ALE meanings); P pauses, N steps, R restarts
from a new real context, G lets the run's policy play. The page also sets the number of denoising steps and the
sampler (the `samplers` the world model declares, docs/plugins.md). Frames are sampled as fast as the world model
goes, at most at the game's own speed (--fps; 0: no cap), and the page shows the frame rate it reaches while frames
arrive.

Why Starlette + uvicorn: a WebSocket pushes frames as soon as they are sampled and carries the keys back
without polling; Starlette serves that and the static page (plain HTML/JS, no build step, in static/)
in a few lines, and uvicorn serves it on a socket we bind ourselves, so a port in use is one sentence before
anything loads, and Ctrl-C stops it cleanly. Both are small, typed, well-kept and installed by the `play` extra.
Frames travel as 64x64 PNGs in the JSON messages (a few kB each). The game itself (both panels, the keys, the
error) is diamond/play/session.py; this module loads the agent and serves the page.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import ipaddress
import json
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import torch

from diamond.loop.agent import Agent
from diamond.loop.config import Config, ConfigError, build_config, from_dict
from diamond.loop.envs import num_actions
from diamond.loop.fields import check_device
from diamond.loop.trainer import check_gpu
from diamond.play.session import KEYS, MAX_CONTEXT, PlaySession, action_for_keys
from diamond.run.cli import run_cli
from diamond.run.errors import KnownError, UsageError
from diamond.run.io import read_yaml

PROG = "python -m diamond.play"
STATIC = Path(__file__).with_name("static")


class PlayError(KnownError):
    """A run folder, checkpoint or address that the player cannot use; the message names it."""


@dataclass
class Player:
    """What every page shares: the loaded agent and how to play it."""

    agent: Agent
    cfg: Config
    device: torch.device
    source: str  # what was loaded, shown on the page
    fps: float = 15.0  # at most this many frames per second; 0: as fast as the model samples
    first_context: int = 0


@dataclass
class Controls:
    """One page's wishes, set by its messages and read by its step loop."""

    paused: bool = False
    policy: bool = False
    held: set[str] = field(default_factory=set)
    tapped: set[str] = field(default_factory=set)  # pressed since the last step (a tap shorter than a step counts)

    def action(self, meanings: list[str]) -> int | None:
        keys, self.tapped = self.held | self.tapped, set()
        return None if self.policy else action_for_keys(meanings, keys)


def _keys(msg: dict[str, Any]) -> set[str]:
    return {k for k in msg.get("keys", []) if k in KEYS} if isinstance(msg.get("keys"), list) else set()


async def play_socket(ws: Any) -> None:
    """One page: push a frame after each step, apply its messages between steps (Starlette WebSocket)."""
    from starlette.websockets import WebSocketDisconnect

    player: Player = ws.app.state.player
    await ws.accept()
    session = await asyncio.to_thread(PlaySession, player.agent, player.cfg, player.device)
    inbox: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
    reader = asyncio.create_task(_read_messages(ws, inbox))
    ctl = Controls()
    try:
        await ws.send_json(session.hello(player.source, player.fps))
        await ws.send_json(await asyncio.to_thread(session.restart, player.first_context))
        while True:
            start = time.perf_counter()
            if ctl.paused or session.over:
                msg = await inbox.get()
                if msg is None:
                    return
                await _apply(ws, msg, ctl, session)
                continue
            while not inbox.empty():
                msg = inbox.get_nowait()
                if msg is None:
                    return
                await _apply(ws, msg, ctl, session)
            if not ctl.paused and not session.over:
                await ws.send_json(await asyncio.to_thread(session.step, ctl.action(session.meanings)))
                if player.fps > 0:
                    await asyncio.sleep(max(0.0, 1.0 / player.fps - (time.perf_counter() - start)))
                else:
                    await asyncio.sleep(0)
    except WebSocketDisconnect:
        return
    finally:
        reader.cancel()
        session.close()


async def _read_messages(ws: Any, inbox: asyncio.Queue[dict[str, Any] | None]) -> None:
    """Queue each JSON object the page sends (anything else is ignored); None when the page goes away."""
    from starlette.websockets import WebSocketDisconnect

    try:
        while True:
            try:
                msg = json.loads(await ws.receive_text())
            except (json.JSONDecodeError, KeyError):  # KeyError: a binary message, which has no text
                continue
            if isinstance(msg, dict):
                await inbox.put(msg)
    except (WebSocketDisconnect, RuntimeError):
        await inbox.put(None)


async def _apply(ws: Any, msg: dict[str, Any], ctl: Controls, session: PlaySession) -> None:
    """Carry out one message of the page and confirm the resulting state; a bad value is an error message."""
    kind = msg.get("type")
    try:
        if kind == "keys":
            ctl.held = _keys(msg)
            ctl.tapped |= ctl.held
        elif kind == "step":
            ctl.tapped |= _keys(msg)
            if ctl.paused and not session.over:  # running: the keys count at the next step
                await ws.send_json(await asyncio.to_thread(session.step, ctl.action(session.meanings)))
        elif kind == "pause":
            ctl.paused = bool(msg.get("paused"))
        elif kind == "policy":
            ctl.policy = bool(msg.get("on"))
        elif kind == "restart":
            context = msg.get("context")
            context = session.context + 1 if not isinstance(context, int) else context
            await ws.send_json(await asyncio.to_thread(session.restart, context))
        elif kind == "settings":
            session.configure(int(msg.get("num_steps", session.num_steps)), msg.get("sampler", session.sampler))
        else:
            return
        await ws.send_json({"type": "state", "paused": ctl.paused, "policy": ctl.policy, "num_steps": session.num_steps,
                            "sampler": session.sampler, "over": session.over})
    except (TypeError, ValueError) as e:
        await ws.send_json({"type": "error", "message": str(e)})


def make_app(player: Player) -> Any:
    """The Starlette app: the page, its static files, and the /play WebSocket."""
    from starlette.applications import Starlette
    from starlette.responses import FileResponse
    from starlette.routing import Mount, Route, WebSocketRoute
    from starlette.staticfiles import StaticFiles

    async def index(request: Any) -> FileResponse:
        return FileResponse(STATIC / "index.html")

    async def favicon(request: Any) -> FileResponse:  # browsers ask for /favicon.ico whatever the page links
        return FileResponse(STATIC / "favicon.svg", media_type="image/svg+xml")

    app = Starlette(routes=[Route("/", index), Route("/favicon.ico", favicon), WebSocketRoute("/play", play_socket),
                            Mount("/static", StaticFiles(directory=STATIC), name="static")])
    app.state.player = player
    return app


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port, or one sentence saying why not (a port in use, an unknown host)."""
    try:
        info = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as e:
        raise PlayError(f"--host {host!r}: not an address of this machine ({e.strerror}).") from None
    sock = socket.socket(info[0], socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(info[4])
    except OSError as e:
        sock.close()
        why = "the port is in use" if e.errno == errno.EADDRINUSE else (e.strerror or str(e))
        raise PlayError(f"cannot listen on {host}:{port}: {why}; pass another --port (0 picks a free one).") from None
    sock.listen(64)
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


def network_warning(sock: socket.socket) -> str | None:
    """A warning when the socket listens beyond this machine (--host 0.0.0.0 or an outside address), else None."""
    host, port = sock.getsockname()[:2]
    if ipaddress.ip_address(host.split("%")[0]).is_loopback:
        return None
    return (f"warning: --host {host} makes the game reachable from the network: anyone who can reach port {port} of "
            "this machine can watch and play it; the default 127.0.0.1 keeps it to this machine.")


def make_server(app: Any) -> Any:
    """A uvicorn server for `app`, quiet but for warnings; open pages get 2 s to close when it stops."""
    import uvicorn

    return uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=2, lifespan="off"))


def serve(app: Any, sock: socket.socket) -> None:
    """Serve until Ctrl-C or SIGTERM; the socket is closed afterwards, and nothing else was created."""
    try:
        make_server(app).run(sockets=[sock])
    except KeyboardInterrupt:  # uvicorn re-raises the signal it stopped on, after a clean shutdown
        pass
    finally:
        sock.close()


class Source(NamedTuple):
    """What --run or --checkpoint names: its config, the checkpoint file, and the label the page shows."""

    cfg: Config
    checkpoint: Path
    label: str


def locate(args: argparse.Namespace) -> Source:
    """Every check of --run or --checkpoint that loads no network: done before the port is taken, so a bad one
    is named whatever listens on the port."""

    if args.run is not None:
        run = args.run
        if not run.is_dir():
            raise PlayError(f"--run {run}: no such run folder.")
        if not (run / "config.yaml").is_file():
            raise PlayError(f"--run {run}: no config.yaml, so not a run folder of diamond.train.")
        cfg = from_dict(read_yaml(run / "config.yaml"))
        if args.game is not None and args.game != cfg.env.game:
            raise PlayError(f"--run {run} is a {cfg.env.game} run, not {args.game}; drop --game or pass a "
                            f"{args.game} run.")
        path = run / "checkpoints" / "last.pt"
        if not path.is_file():
            raise PlayError(f"--run {run}: no checkpoints/last.pt yet (the run has not finished its first epoch).")
        source = Source(cfg, path, f"run {run.resolve().name}")  # its name: the page shows no local path
    else:
        if args.game is None:
            raise UsageError("--checkpoint needs --game, the Atari game the agent was trained on.")
        try:
            cfg = build_config(args.profile, list(args.overrides), **{"env.game": args.game})
        except ConfigError as e:
            raise UsageError(str(e)) from e
        check_checkpoint_game(args.checkpoint, cfg.env.game)
        source = Source(cfg, args.checkpoint, f"checkpoint {args.checkpoint.name}")
    if args.device is not None:
        cfg.perf.device = args.device
    check_gpu(cfg)
    return source


def load_player(args: argparse.Namespace, source: Source | None = None) -> Player:
    """The agent of --run DIR (its config.yaml and checkpoints/last.pt) or of --checkpoint, on its device."""
    from diamond.evaluate import load_agent
    from diamond.loop.trainer import resolve_device

    cfg, path, label = source or locate(args)
    agent = load_agent(path, cfg, num_actions(cfg.env.game), args.official)
    device = resolve_device(cfg.perf.device)
    return Player(agent.to(device).eval(), cfg, device, label, fps=args.fps, first_context=args.context)


def check_checkpoint_game(path: Path, game: str) -> None:
    """A checkpoint inside a run folder (<run>/checkpoints/last.pt) must come from a run of `game`: an agent of
    another game with as many actions would otherwise load and play nonsense."""
    from diamond.run.rundir import recorded_identity

    run = path.parent.parent
    trained = (recorded_identity(run) or {}).get("game") if path.parent.name == "checkpoints" else None
    if trained is not None and trained != game:
        raise PlayError(f"--checkpoint {path} is from a {trained} run ({run}), not {game}; pass --game {trained}.")


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--run", type=Path, help="run folder of diamond.train (config.yaml, checkpoints/last.pt)")
    src.add_argument("--checkpoint", type=Path, help="an agent checkpoint (with --game, --profile, --set)")
    p.add_argument("--official", action="store_true", help="the checkpoint is in the authors' released format")
    p.add_argument("--game", help="Atari game of --checkpoint (with --run: checked against the run's)")
    p.add_argument("--profile", default="paper", help="profile whose networks --checkpoint has (default paper)")
    p.add_argument("--set", dest="overrides", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 picks a free one)")
    p.add_argument("--fps", type=float, default=None, help="at most this many frames per second (default: the "
                   "game's speed, 60 / frameskip; 0: as fast as the world model samples)")
    p.add_argument("--context", type=int, default=0, help="number of the first real context (default 0)")
    p.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: the config's perf.device)")
    args = p.parse_args(argv)
    if (args.profile != "paper" or args.overrides or args.official) and args.run is not None:
        raise UsageError("--profile, --set and --official describe a --checkpoint; a --run folder has its own config.")
    if not 0 <= args.port <= 65535 or not 0 <= args.context <= MAX_CONTEXT or (args.fps is not None and args.fps < 0):
        raise UsageError(f"--port must be 0..65535, --context 0..{MAX_CONTEXT} and --fps >= 0.")
    if args.device is not None:
        try:
            check_device(args.device)
        except ValueError:
            raise UsageError(f"--device {args.device!r}: use auto, cpu, cuda or cuda:N.") from None
    return args


def main(argv: list[str] | None = None) -> int:
    """The command line under the shared error path (diamond/run/cli.py): returns the exit status."""
    return run_cli(PROG, _main, argv)


def check_server_packages() -> None:
    """The web server's packages come with the `play` extra; without them, say so in one sentence."""
    import importlib.util

    missing = [m for m in ("starlette", "uvicorn", "websockets") if importlib.util.find_spec(m) is None]
    if missing:
        raise PlayError(f"{', '.join(missing)} not installed: pip install -e '.[play]' (the play extra).")


def _main(argv: list[str]) -> int:
    args = parse_args(argv)
    check_server_packages()
    source = locate(args)  # a bad --run or --checkpoint is named first, whatever listens on the port
    sock = bind(args.host, args.port)  # then a port in use, before the networks load
    try:
        player = load_player(args, source)
        if args.fps is None:
            player.fps = 60.0 / player.cfg.env.frameskip
        app = make_app(player)
    except BaseException:
        sock.close()
        raise
    warning = network_warning(sock)
    if warning:
        print(warning, file=sys.stderr, flush=True)
    print(f"Playing {player.cfg.env.game} ({args.run or args.checkpoint}) at {url_of(sock)} (Ctrl-C stops)", flush=True)
    serve(app, sock)
    print("stopped", flush=True)
    return 0

