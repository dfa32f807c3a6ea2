"""The agent's loop (Algorithm 1) and the config that describes it: where a new game, learner or diagnostic goes.

- the config: `config` (the dataclass schema and `build_config`), `fields` (each field's type and range),
  `profiles` (paper, small, smoke, cpu as data);
- the games: `games` (Table 1's reference scores), `envs` (Atari through gymnasium + ale-py), `toy_env` and
  `memory_game` (the small games of the tests and the memory probe);
- the data: `data` (episodes on disk, segment sampling);
- the learners: `rl` (Eq. 14-16), `agent` (D_θ, R_ψ, π/V and their losses), `perf` (fast-path switches);
- the loop itself: `trainer` (collect, update, evaluate, checkpoint), `diagnostics` (why an agent does or does
  not learn), `controls` (the policies "learns" is measured against).

It sits above `models` and `run`. The config lives here, not in `run`, because building one checks names that
the models and games own (paradigms, samplers, history conditionings, world-model factories, ALE games).
"""
