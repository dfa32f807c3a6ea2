"""Run machinery, the bottom room: what every other room and every command shares, and nothing that knows about
models, games or learning.

- `errors`: the known errors (each one sentence naming the file or flag at fault, with its exit status);
- `cli`: the one error path every command line goes through (`run_cli`);
- `io`: atomic writes that keep the umask's mode, validated reads of JSON, YAML and JSONL;
- `rundir`: the run folder, the contract between the layers (identity, lock, result, repair on resume);
- `checkpoint`: atomic torch.save, `weights_only` loading, RNG capture and restore.

It sits below `models` and `loop` because both raise its errors and write through its files (shared/DESIGN.md:
"a helper two rooms share lives below both"). The config schema is not here: it validates against the paradigms,
networks and games, so it lives in `loop`, above them.
"""
