"""World models and their parts: where a new paradigm, sampler, network or world model goes.

- `diffusion/`: the paradigms (EDM, DDPM: loss, preconditioning, noise grid) and one function per sampler;
- `nets/`: the networks (U-Net denoiser, history conditioning, R_ψ, actor-critic);
- `world_model`: DIAMOND's diffusion world model and the imagination loop (Figure 1, Algorithm 1);
- `registry`: the one door every world model comes through (names, entry points, the checks at the door);
- `recurrent_wm`: the second built-in entrant, a frame stack plus a recurrent memory;
- `official`: the key mapping from the released code's checkpoints to these networks.

It imports only `diamond.run` (errors). Nothing here reads a config file, an env or a replay: a world model is
built from a config object it is handed, as the released code's `models/` is.
"""
