"""Replay persistence (exact, atomic, crash-safe) and segment sampling (padding, masks, recency)."""

from pathlib import Path

import numpy as np
import pytest
import torch

import diamond.loop.data as data
from diamond.loop.data import Episode, ReplayBuffer, sample_segments, to_float, to_uint8
from diamond.run.io import CorruptFileError


def frame(value: int) -> np.ndarray:
    return np.full((3, 4, 4), value, np.uint8)


def make_episode(e: int, num_steps: int, done: bool = True) -> Episode:
    """Frame t of episode e has every pixel = 10*e + t + 1 (never 0, so padding is recognisable);
    act[t] = t + 1, rew[t] = 100*e + t, the last step terminates if `done`."""
    ep = Episode(frame(10 * e + 1))
    for t in range(num_steps):
        ep.add_step(t + 1, 100.0 * e + t, done and t == num_steps - 1, False, frame(10 * e + t + 2))
    return ep


def make_buffer(lengths, directory=None, done=True) -> ReplayBuffer:
    buf = ReplayBuffer(directory)
    for e, n in enumerate(lengths):
        buf.add_episode(make_episode(e, n, done))
    return buf


def assert_same(a: ReplayBuffer, b: ReplayBuffer) -> None:
    assert a.num_episodes == b.num_episodes and a.num_steps == b.num_steps
    for x, y in zip(a.episodes, b.episodes):
        for k, v in x.arrays().items():
            w = y.arrays()[k]
            assert v.dtype == w.dtype and np.array_equal(v, w), k


def test_episode_layout_and_growth():
    ep = make_episode(0, 200, done=True)  # several capacity doublings
    assert ep.obs.shape == (201, 3, 4, 4) and ep.obs.dtype == np.uint8
    assert ep.act.dtype == np.int64 and ep.rew.dtype == np.float32 and ep.end.dtype == bool
    assert [int(ep.obs[t, 0, 0, 0]) for t in (0, 100, 200)] == [1, 101, 201]
    assert ep.done and ep.end.sum() == 1 and ep.end[-1]
    with pytest.raises(ValueError, match="finished episode"):
        ep.add_step(0, 0.0, False, False, frame(0))


def test_round_trip_is_exact(tmp_path):
    buf = make_buffer([5, 1, 7], tmp_path)
    a = buf.start_episode(frame(200))  # two envs collecting side by side
    b = buf.start_episode(frame(210))
    buf.add_step(3, -2.5, False, False, frame(201), episode=a)
    buf.add_step(2, 7.0, False, True, frame(211), episode=b)
    buf.add_step(1, 0.5, False, False, frame(202), episode=a)
    buf.save()
    loaded = ReplayBuffer.load(tmp_path)
    assert_same(buf, loaded)
    assert not loaded[a].done and loaded[b].done and loaded.num_steps == 16 and loaded.directory == tmp_path
    assert loaded[a].obs[:, 0, 0, 0].tolist() == [200, 201, 202] and loaded[a].rew.tolist() == [-2.5, 0.5]


def test_growing_episode_across_saves_rewrites_only_changed_files(tmp_path, monkeypatch):
    buf = make_buffer([4], tmp_path)
    buf.start_episode(frame(50))
    buf.add_step(1, 1.0, False, False, frame(51))
    buf.save()
    written = []
    real = data.atomic_write
    monkeypatch.setattr(data, "atomic_write", lambda path, fn: written.append(Path(path).name) or real(path, fn))
    buf.add_step(2, 2.0, False, False, frame(52))
    buf.add_step(3, 3.0, False, True, frame(53))
    buf.save()
    assert written == ["episode_000001.npz"]
    loaded = ReplayBuffer.load(tmp_path)
    assert_same(buf, loaded)
    assert loaded[1].num_steps == 3 and loaded[1].trunc[-1] and loaded[1].done
    written.clear()
    buf.save()
    assert written == []


def test_crash_before_index_keeps_the_last_commit(tmp_path, monkeypatch):
    buf = make_buffer([3], tmp_path, done=False)
    buf.save()
    committed = ReplayBuffer.load(tmp_path)
    buf.add_step(9, 9.0, True, False, frame(99))  # the episode file grows...
    buf.add_episode(make_episode(1, 2))

    def crash(*args, **kwargs):
        raise KeyboardInterrupt("killed before the index")

    monkeypatch.setattr(data, "atomic_write_json", crash)  # ...but the index is never written
    with pytest.raises(KeyboardInterrupt):
        buf.save()
    assert_same(committed, ReplayBuffer.load(tmp_path))


def test_failing_writer_leaves_the_old_file_intact(tmp_path, monkeypatch):
    buf = make_buffer([3], tmp_path, done=False)
    buf.save()
    path = tmp_path / "episode_000000.npz"
    before = path.read_bytes()

    def half_write(f, **arrays):
        f.write(b"PK\x03\x04 half a zip")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez_compressed", half_write)
    buf.add_step(1, 1.0, False, False, frame(77))
    with pytest.raises(OSError, match="disk full"):
        buf.save()
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["episode_000000.npz", "index.json"]  # no temp left
    assert ReplayBuffer.load(tmp_path).num_steps == 3


@pytest.mark.parametrize("damage", ["truncate", "garbage", "delete"])
def test_corrupt_episode_file_names_it(tmp_path, damage):
    make_buffer([6, 2], tmp_path).save()
    path = tmp_path / "episode_000001.npz"
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif damage == "garbage":
        path.write_bytes(b"not an npz at all")
    else:
        path.unlink()
    with pytest.raises(CorruptFileError, match="episode_000001.npz"):
        ReplayBuffer.load(tmp_path)


@pytest.mark.parametrize("text", ['{"format": 1, "episo', '[1, 2]', '{"format": 1, "episodes": [{"file": "../x.npz", '
                                  '"num_steps": 2}]}', '{"format": 1, "episodes": [{"file": "episode_000000.npz"}]}'])
def test_corrupt_index_names_it(tmp_path, text):
    make_buffer([2], tmp_path).save()
    (tmp_path / "index.json").write_text(text)
    with pytest.raises(CorruptFileError, match="index.json"):
        ReplayBuffer.load(tmp_path)


def test_save_without_directory_is_a_clear_error():
    with pytest.raises(ValueError, match="no directory"):
        make_buffer([2]).save()


def test_left_padding_masks_and_values():
    buf = make_buffer([3])  # frames 0..3 have values 1..4; act[t] = t + 1
    seg = sample_segments(buf, 400, 4, np.random.default_rng(0), pad="left", recency_weights=None)
    assert seg.obs.shape == (400, 4, 3, 4, 4) and seg.obs.dtype == np.uint8
    lasts = set()
    for b in range(400):
        m, v = seg.mask[b], seg.obs[b, :, 0, 0, 0].astype(int)
        n_pad = int((~m).sum())
        assert m.tolist() == [False] * n_pad + [True] * (4 - n_pad) and n_pad <= 2  # >= 2 real frames, at the end
        assert (v[~m] == 0).all() and (seg.act[b, ~m] == 0).all() and (seg.rew[b, ~m] == 0).all()
        real = v[m]
        assert (np.diff(real) == 1).all()  # consecutive frames of the episode
        if n_pad:
            assert real[0] == 1  # padding only before the episode start
        last = real[-1] - 1
        lasts.add(int(last))
        assert seg.act[b, -1] == (last + 1 if last < 3 else 0)  # act at frame t is act[t]; none after the end
        assert seg.trans_mask[b, -1] == (last < 3)
        assert seg.end[b].tolist() == (v == 3).tolist()  # end sits on frame 2 (value 3): transition 2 -> 3
    assert lasts == {1, 2, 3}
    single = sample_segments(buf, 200, 1, np.random.default_rng(1), pad="left", recency_weights=None)
    assert single.mask.all() and set(single.obs[:, 0, 0, 0, 0].tolist()) == {1, 2, 3, 4}


def test_both_padding_contains_a_transition():
    buf = make_buffer([2])  # frames 1, 2, 3
    seg = sample_segments(buf, 500, 5, np.random.default_rng(0), pad="both", recency_weights=None)
    left_pad = right_pad = 0
    for b in range(500):
        m, v = seg.mask[b], seg.obs[b, :, 0, 0, 0].astype(int)
        assert (seg.trans_mask[b, :-1] & m[1:]).any()  # one real transition inside the window
        assert (v[~m] == 0).all() and (np.diff(v[m]) == 1).all()
        assert (seg.trans_mask[b] == (m & (v != 3))).all()  # frame 3 is the last: no transition after it
        left_pad += not m[0]
        right_pad += not m[-1]
    assert left_pad > 50 and right_pad > 50


def test_recency_weights_are_respected():
    buf = make_buffer([5] * 8)  # groups {0,1} {2,3} {4,5} {6,7}
    seg = sample_segments(buf, 8000, 2, np.random.default_rng(0), pad="left")
    ep_ids = (seg.obs[:, -1, 0, 0, 0].astype(int) - 1) // 10
    freq = np.bincount(ep_ids, minlength=8) / 8000
    np.testing.assert_allclose(freq, [0.05] * 6 + [0.35] * 2, atol=0.02)
    few = sample_segments(make_buffer([5] * 3), 3000, 2, np.random.default_rng(1), pad="left")
    np.testing.assert_allclose(np.bincount((few.obs[:, -1, 0, 0, 0] - 1) // 10) / 3000, [1 / 3] * 3, atol=0.03)


def test_uniform_over_transitions_without_recency():
    buf = make_buffer([1, 3])
    seg = sample_segments(buf, 4000, 2, np.random.default_rng(0), pad="both", recency_weights=None)
    freq = np.bincount((seg.obs[:, :, 0, 0, 0].max(1).astype(int) - 1) // 10) / 4000
    np.testing.assert_allclose(freq, [0.25, 0.75], atol=0.03)


def test_in_progress_episodes_are_sampled_and_empty_ones_skipped():
    buf = make_buffer([3])
    buf.start_episode(frame(41))
    buf.add_step(1, 0.0, False, False, frame(42))  # episode 1, still running
    buf.start_episode(frame(90))  # episode 2, no transition yet
    seg = sample_segments(buf, 500, 3, np.random.default_rng(0), pad="left")
    assert set(((seg.obs[:, -1, 0, 0, 0].astype(int) - 1) // 10).tolist()) == {0, 4}
    with pytest.raises(ValueError, match="no episode long enough"):
        sample_segments(make_buffer([0]), 1, 2, np.random.default_rng(0), pad="left")


def test_invalid_arguments_are_clear():
    buf = make_buffer([3])
    with pytest.raises(ValueError, match="pad must be"):
        sample_segments(buf, 2, 3, np.random.default_rng(0), pad="right")
    with pytest.raises(ValueError, match="seq_len"):
        sample_segments(buf, 2, 1, np.random.default_rng(0), pad="both")


def test_pixel_conversions_and_torch_segment():
    x = torch.arange(256, dtype=torch.uint8)
    f = to_float(x)
    assert f[0] == -1 and f[-1] == 1 and f.dtype == torch.float32
    assert torch.equal(to_uint8(f), x)
    assert to_uint8(torch.tensor([-3.0, 0.0, 3.0])).tolist() == [0, 128, 255]
    seg = sample_segments(make_buffer([4]), 2, 3, np.random.default_rng(0), pad="left").to_torch("cpu")
    assert seg.obs.dtype == torch.uint8 and seg.act.dtype == torch.int64 and seg.rew.dtype == torch.float32
    assert seg.end.dtype == torch.bool and seg.mask.dtype == torch.bool and seg.obs.shape == (2, 3, 3, 4, 4)


def test_fewer_episodes_than_recency_groups_are_drawn_by_length_as_released() -> None:
    """docs/fidelity.md row 23: Freeway's initial collection (no lives) holds 3 games of 2,040, 2,040 and 920 steps;
    the released sampler weights them by length when there are fewer episodes than the 4 recency groups."""
    from diamond.loop.data import _episode_probs

    np.testing.assert_allclose(_episode_probs(np.array([2040, 2040, 920]), (0.1, 0.1, 0.1, 0.7)),
                               [0.408, 0.408, 0.184])
    np.testing.assert_allclose(_episode_probs(np.array([0, 10, 30]), (0.1, 0.1, 0.1, 0.7)), [0, 0.25, 0.75])
    groups = _episode_probs(np.array([10] * 4), (0.1, 0.1, 0.1, 0.7))  # 4 episodes: one per group
    np.testing.assert_allclose(groups, [0.1, 0.1, 0.1, 0.7])
