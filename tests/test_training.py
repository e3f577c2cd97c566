"""Training and fine-tuning: the loss goes down, checkpoints resume, the CLI fine-tunes on labelled
scenes and refuses bad arguments with one line and exit code 2. Tiny crops, a few steps: quick on CPU."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import models.training as training
from models.dataset import fixed_scenes, user_sample
from models.distillation import distillation_loss
from models.interface import ModelMeta
from models.loading import read_weights, save_state, save_weights
from models.training import TrainConfig, train
from models.unet import build_unet
from service.cli import main
from service.colour_balance import band_balance, brightness_spread
from tests.labelled import make_labelled_scene

SMALL = {"widths": [8, 8, 16, 16, 32, 32], "blocks": [0, 1, 1, 1, 1]}


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    d = tmp_path_factory.mktemp("labelled")
    make_labelled_scene(d / "a.tif", d / "a.geojson", seed=1)
    make_labelled_scene(d / "b.tif", d / "b.geojson", seed=2, labels_crs="EPSG:3857")
    return d


@pytest.fixture(scope="module")
def init_weights(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("init") / "init.pt"
    save_weights(path, build_unet(**SMALL), ModelMeta(version="0.0.1", arch_args=SMALL,
                                                        extra={"min_confidence": {"tarped_cargo": 0.7},
                                                               "colour_balance": {"low": [1.0, 0.95, 0.9],
                                                                                  "high": [1.1, 1.05, 1.0]},
                                                               "min_brightness_spread": 20.0}))
    return path


def small_config(tmp_path, **kw) -> TrainConfig:
    base = dict(steps=30, batch=4, crop=64, out=str(tmp_path / "w.pt"), device="cpu", workers=0, progress=False,
                widths=tuple(SMALL["widths"]), blocks=tuple(SMALL["blocks"]), lr=5e-3, threads=1)
    base.update(kw)
    return TrainConfig(**base)


def test_short_training_lowers_the_loss(labelled, tmp_path):
    scenes = fixed_scenes([user_sample(str(labelled / "a.tif"), str(labelled / "a.geojson"))])
    result = train(small_config(tmp_path), scene_at=scenes)
    first, last = result.losses[0], result.losses[-1]
    assert last < 0.85 * first, result.losses
    meta, _ = read_weights(result.out)
    assert meta.extra["steps"] == 30 and meta.extra["device"] == "cpu"
    assert meta.extra["hardware"].startswith("CPU") and meta.extra["train_seconds"] > 0
    assert meta.extra["engine"]["run_seed"] == 0 and "version" in meta.extra["engine"]
    assert meta.arch_args == {"widths": list(SMALL["widths"]), "blocks": list(SMALL["blocks"])}
    sample = scenes(0)  # every index is this one scene: the balance recorded is its own
    own = tuple(band_balance(sample.image, sample.valid))
    assert meta.colour_balance is not None
    assert all(edge == pytest.approx(own, abs=1e-4) for edge in meta.colour_balance)
    spread = brightness_spread(sample.image, sample.valid)  # and so is the range of contrast
    assert meta.min_spread == pytest.approx(spread, abs=0.01)


def test_training_on_two_crop_sides_in_turn(labelled, tmp_path, monkeypatch):
    scenes = fixed_scenes([user_sample(str(labelled / "a.tif"), str(labelled / "a.geojson"))])
    seen = []
    real = training.railsight_loss

    def spy(logits, *args, **kwargs):
        seen.append((logits.shape[0], *logits.shape[2:]))
        return real(logits, *args, **kwargs)

    monkeypatch.setattr(training, "railsight_loss", spy)
    result = train(small_config(tmp_path, steps=4, crop=(64, 96), batch=(3, 1)), scene_at=scenes)
    assert seen == [(3, 64, 64), (1, 96, 96)] * 2
    meta, _ = read_weights(result.out)
    assert meta.extra["crop_px"] == [64, 96] and meta.extra["batch"] == [3, 1]


def test_same_seed_same_weights(labelled, tmp_path):
    scenes = fixed_scenes([user_sample(str(labelled / "a.tif"), str(labelled / "a.geojson"))])
    a = train(small_config(tmp_path, steps=3, out=str(tmp_path / "a.pt")), scene_at=scenes)
    b = train(small_config(tmp_path, steps=3, out=str(tmp_path / "b.pt")), scene_at=scenes)
    sa, sb = read_weights(a.out)[1], read_weights(b.out)[1]
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("ema", [None, 0.9])
def test_checkpoint_and_resume(labelled, tmp_path, monkeypatch, ema):
    scenes = fixed_scenes([user_sample(str(labelled / "a.tif"), str(labelled / "a.geojson"))])
    real = training.railsight_loss
    calls = {"n": 0}

    def interrupt_on_fourth(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(training, "railsight_loss", interrupt_on_fourth)
    cfg = small_config(tmp_path, steps=6, checkpoint_every=2, ema=ema)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, scene_at=scenes)
    saved = torch.load(cfg.checkpoint_path, weights_only=False)
    assert saved["step"] == 3 and ("ema" in saved) == (ema is not None)
    if ema is not None:  # the average has taken the first copy and two updates
        assert int(saved["ema"]["n_averaged"]) == 3
    monkeypatch.setattr(training, "railsight_loss", real)
    result = train(small_config(tmp_path, steps=6, checkpoint_every=2, resume=True, ema=ema), scene_at=scenes)
    assert result.steps == 6 and not cfg.checkpoint_path.exists()


def test_ema_writes_the_average_and_the_raw_weights_beside_it(labelled, tmp_path):
    scenes = fixed_scenes([user_sample(str(labelled / "a.tif"), str(labelled / "a.geojson"))])
    raw_run = train(small_config(tmp_path, steps=6, out=str(tmp_path / "plain.pt")), scene_at=scenes)
    result = train(small_config(tmp_path, steps=6, ema=0.5), scene_at=scenes)
    meta, averaged = read_weights(result.out)
    raw_meta, raw = read_weights(training.raw_weights_path(result.out))
    assert meta.extra["ema_decay"] == 0.5 and raw_meta.extra["raw_of_ema_run"] is True
    # The same seed trains the same raw weights with or without the average beside them.
    plain = read_weights(raw_run.out)[1]
    assert all(torch.equal(raw[k], plain[k]) for k in raw)
    floats = [k for k in raw if raw[k].is_floating_point()]
    assert any(not torch.allclose(averaged[k], raw[k]) for k in floats)
    assert all(torch.equal(averaged[k], raw[k]) for k in raw if not raw[k].is_floating_point())


def test_distillation_loss_is_zero_on_the_teachers_own_answer_and_counts_valid_pixels_only():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 6, 8, 8, generator=g)
    probs, cores = torch.softmax(logits[:, :4], dim=1), torch.sigmoid(logits[:, 4:])
    valid = torch.ones(2, 8, 8, dtype=torch.bool)
    assert float(distillation_loss(logits, probs, cores, valid)) == pytest.approx(0.0, abs=1e-5)
    other = torch.randn(2, 6, 8, 8, generator=g)
    assert float(distillation_loss(other, probs, cores, valid)) > 0.1
    valid[1] = False  # the second tile no-data: only the first counts
    half = distillation_loss(other[:1], probs[:1], cores[:1], valid[:1])
    assert float(distillation_loss(other, probs, cores, valid)) == pytest.approx(float(half), rel=1e-5)


def test_distillation_adds_the_teachers_term_and_is_recorded(labelled, init_weights, tmp_path):
    scenes = fixed_scenes([user_sample(str(labelled / "a.tif"), str(labelled / "a.geojson"))])
    common = dict(steps=1, init=str(init_weights), seed=4)
    plain = train(small_config(tmp_path, out=str(tmp_path / "p.pt"), **common), scene_at=scenes)
    distilled = train(small_config(tmp_path, out=str(tmp_path / "d.pt"), distil_views=2, **common), scene_at=scenes)
    # Same start, same batch: the one step's loss is the label loss, plus a KL term above 0 (one
    # view of the init weights is not their two-view mean).
    assert distilled.losses[0] > plain.losses[0]
    meta, _ = read_weights(distilled.out)
    assert meta.extra["distil_views"] == 2 and meta.extra["history"][-1]["distil_views"] == 2
    assert "distil_views" not in read_weights(plain.out)[0].extra


def test_gap_weight_changes_the_loss_and_is_recorded(labelled, init_weights, tmp_path):
    scenes = fixed_scenes([user_sample(str(labelled / "a.tif"), str(labelled / "a.geojson"))])
    common = dict(steps=1, init=str(init_weights), seed=4)
    plain = train(small_config(tmp_path, out=str(tmp_path / "p.pt"), **common), scene_at=scenes)
    rim = train(small_config(tmp_path, out=str(tmp_path / "g.pt"), gap_weight=2.0, **common), scene_at=scenes)
    # Same start, same batch: only the weighting of the cars' rims in the core loss differs.
    assert rim.losses[0] != pytest.approx(plain.losses[0], rel=1e-4)
    assert read_weights(rim.out)[0].extra["history"][-1]["gap_weight"] == 2.0
    assert "gap_weight" not in read_weights(plain.out)[0].extra["history"][-1]


def test_ema_follows_its_decay_after_a_short_ramp():
    from models.weight_average import decay_at, ema_model

    model = torch.nn.Linear(1, 1, bias=False)
    ema = ema_model(model, 0.9)
    for value in (1.0, 2.0, 4.0):
        model.weight.data.fill_(value)
        ema.update_parameters(model)
    # 1 (copied), then 1 + 0.9 * (2 - 1) = 1.9 at decay 0.1, then 1.9 + (1 - 2/11) * (4 - 1.9).
    assert decay_at(0.9, 0) == pytest.approx(0.1) and decay_at(0.9, 1) == pytest.approx(2 / 11)
    assert ema.module.weight.item() == pytest.approx(1.9 + (9 / 11) * 2.1)
    assert decay_at(0.9, 1000) == 0.9
    with pytest.raises(ValueError, match="between 0 and 1"):
        ema_model(model, 1.0)


def test_finetune_cli_on_two_labelled_scenes(labelled, init_weights, tmp_path, capsys):
    out = tmp_path / "tuned.pt"
    rc = main(["train", "--init", str(init_weights), "--scenes", f"{labelled}/a.tif,{labelled}/b.tif",
               "--labels", f"{labelled}/a.geojson,{labelled}/b.geojson", "--steps", "8", "--batch", "2",
               "--crop", "64", "--workers", "0", "--device", "cpu", "--threads", "1", "--out", str(out), "--quiet"])
    assert rc == 0, capsys.readouterr().err
    meta, state = read_weights(out)
    assert meta.extra["kind"] == "fine-tune" and meta.extra["scenes"] == ["a.tif", "b.tif"]
    init_history = read_weights(init_weights)[0].extra.get("history", [])
    assert meta.extra["history"][-1]["kind"] == "fine-tune" and len(meta.extra["history"]) == len(init_history) + 1
    assert meta.extra["total_steps"] == sum(h["steps"] for h in init_history) + 8
    all_seconds = sum(h.get("train_seconds", 0.0) for h in meta.extra["history"])
    assert meta.extra["total_train_seconds"] == pytest.approx(all_seconds, abs=0.1)
    assert meta.version == "0.0.1" and meta.arch_args == SMALL  # the init model's identity is kept
    assert meta.extra["min_confidence"] == {"tarped_cargo": 0.7}  # and its confidence floors, said to be inherited
    assert meta.extra["history"][-1]["confidence_floors"] == "inherited"
    assert meta.colour_balance == ((1.0, 0.95, 0.9), (1.1, 1.05, 1.0))  # and the balance its scenes were read with
    assert meta.min_spread == 20.0
    before = read_weights(init_weights)[1]
    assert any(not torch.equal(before[k], state[k]) for k in state)
    assert str(out) in capsys.readouterr().out


def test_labels_are_reprojected_onto_the_grid(labelled):
    # scene b's labels are in Web Mercator: they must land on the painted pixels all the same
    s = user_sample(str(labelled / "b.tif"), str(labelled / "b.geojson"))
    counts = np.bincount(s.semantic.ravel(), minlength=4)
    assert counts[1] == 14 * 28 * 6  # 14 cars of 28 x 6 px
    assert counts[2] == 12 * 10 + 16 * 14 + 10 * 10  # three tarps
    red = s.image[0].astype(int)
    grey_or_coloured = np.isin(red, [200, 150, 60])
    assert grey_or_coloured[s.semantic == 1].mean() > 0.99
    assert s.known.all()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "--crop", "50"], "--crop must be a multiple of 32"),
        (["train", "--steps", "0"], "--steps must be at least 1"),
        (["train", "--scenes", "a.tif"], "--scenes and --labels must pair up"),
        (["train", "--batch", "x"], "expected whole numbers separated by commas"),
        (["train", "--crop", "320,"], "expected whole numbers separated by commas"),
        (["train", "--crop", "320,50"], "--crop must be a multiple of 32 and at least 64, got 320,50"),
        (["train", "--crop", "320,576", "--batch", "8,2,1"], "--batch: give one batch, or one per crop side (2), got 8,2,1"),
        (["train", "--batch", "0"], "--batch must be at least 1, got 0"),
        (["train", "--device", "tpu"], "invalid choice"),
        (["train", "--synth-share", "0.5"], "--synth-share only applies when fine-tuning"),
        (["train", "--season-share", "monsoon=0.3"], "season must be one of summer, spring"),
        (["train", "--season-share", "snow=1.5"], "share must be above 0 and at most 1, got 1.5"),
        (["train", "--season-share", "snow"], "expected SEASON=SHARE"),
        (["train", "--season-share", "snow=0.6,winter=0.5"], "the shares add up to 1.1, more than 1"),
        (["train", "--season-share", "snow=0.2,snow=0.1"], "each season at most once, got snow, snow"),
        (["train", "--season-share", "snow=0"], "share must be above 0 and at most 1, got 0"),
        (["train", "--season-share", "snow=lots"], "expected SEASON=SHARE"),
        (["train", "--season-share", "snow=0.4", "--scenes", "a.tif", "--labels", "a.geojson"],
         "--season-share applies to synthetic training, not fine-tuning"),
        (["train", "--pixel-size-share", "0.75-1.0"], "expected LOW-HIGH=SHARE"),
        (["train", "--pixel-size-share", "coarse=0.3"], "expected LOW-HIGH=SHARE"),
        (["train", "--pixel-size-share", "1.0-0.75=0.3"], "need 0.05 <= LOW < HIGH <= 5 metres, got 1-0.75"),
        (["train", "--pixel-size-share", "0.75-1.0=2"], "share must be above 0 and at most 1, got 2"),
        (["train", "--pixel-size-share", "0.75-1.0=0.3", "--scenes", "a.tif", "--labels", "a.geojson"],
         "--pixel-size-share applies to synthetic training, not fine-tuning"),
        (["train", "--shift-share", "1.5"], "--shift-share must be between 0 and 1, got 1.5"),
        (["train", "--gap-weight", "-1"], "--gap-weight must be 0 or more, got -1"),
        (["train", "--shift-share", "half"], "invalid float value"),
        (["train", "--ema", "1"], "--ema must be between 0 and 1, got 1"),
        (["train", "--init", "shipped", "--distil-views", "3"], "--distil-views must be one of 2, 4, 8, got 3"),
        (["train", "--distil-views", "4"], "--distil-views needs --init"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        raise SystemExit(main(argv))
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_bad_labels_and_files_exit_2_with_one_line(labelled, init_weights, tmp_path, capsys):
    bad = tmp_path / "bad.geojson"
    bad.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"class": "zug"}, "geometry": {"type": "Point", "coordinates": [0, 0]}}]}))
    common = ["--steps", "1", "--quiet", "--workers", "0", "--threads", "1", "--out", str(tmp_path / "x.pt")]
    cases = [
        (["--init", str(init_weights), "--scenes", f"{labelled}/a.tif", "--labels", str(bad)], "unknown class 'zug'"),
        (["--init", str(init_weights), "--scenes", f"{tmp_path}/nope.tif", "--labels", str(bad)], "nope.tif"),
        (["--init", str(tmp_path / "missing.pt"), "--scenes", f"{labelled}/a.tif", "--labels",
          f"{labelled}/a.geojson"], "missing.pt"),
    ]
    for extra, message in cases:
        rc = main(["train", *extra, *common])
        err = capsys.readouterr().err.strip()
        assert rc == 2 and len(err.splitlines()) == 1 and message in err, err


def test_season_share_renders_that_share_of_training_scenes_in_the_season(monkeypatch):
    """``--season-share snow=0.4``: about 40 % of the training scene indices are rendered in snow
    (the rest draw their season as usual), from the run's own training seeds, deterministically."""
    import models.dataset as dataset
    from models.training import TrainConfig, scene_source

    asked = []
    monkeypatch.setattr(dataset, "synthetic_sample", lambda seed, **kw: asked.append((seed, kw.get("season"))) or seed)
    scene_at, _ = scene_source(TrainConfig(seed=3, season_share=(("snow", 0.4),)), 0.5)
    seeds = [scene_at(i) for i in range(1000)]
    snowy = [season == "snow" for _, season in asked]
    assert 0.38 <= np.mean(snowy) <= 0.42
    assert all(season in (None, "snow") for _, season in asked)
    assert seeds == [dataset.train_scene_seed(3, i) for i in range(1000)]  # training seeds, whatever the season
    asked.clear()
    assert [scene_at(i) for i in range(50)] == seeds[:50] and np.mean([s == "snow" for _, s in asked]) == np.mean(snowy[:50])


def test_two_season_shares_take_their_own_scenes(monkeypatch):
    """``--season-share snow=0.2,winter=0.3``: about a fifth of the scenes in snow and three tenths in
    winter, never both; the rest draw their season as the engine does."""
    import models.dataset as dataset
    from models.training import TrainConfig, scene_source

    asked = []
    monkeypatch.setattr(dataset, "synthetic_sample", lambda seed, **kw: asked.append(kw.get("season")) or seed)
    scene_at, _ = scene_source(TrainConfig(seed=5, season_share=(("snow", 0.2), ("winter", 0.3))), 0.5)
    seeds = [scene_at(i) for i in range(2000)]
    assert seeds == [dataset.train_scene_seed(5, i) for i in range(2000)]
    seasons = np.array([str(s) for s in asked])
    assert 0.18 <= np.mean(seasons == "snow") <= 0.22 and 0.28 <= np.mean(seasons == "winter") <= 0.32
    assert set(seasons) == {"snow", "winter", "None"}


def test_pixel_size_share_renders_that_share_at_pixel_sizes_spread_over_the_range(monkeypatch):
    """``--pixel-size-share 0.75-1.0=0.3`` with ``--season-share snow=0.4``: about 30 % of the
    training scenes come at 0.75-1.0 m, spread over that range, picked independently of the 40 % in
    snow, from the run's own training seeds."""
    import models.dataset as dataset
    from models.training import TrainConfig, scene_source

    asked = []
    monkeypatch.setattr(dataset, "synthetic_sample", lambda seed, **kw: asked.append((seed, kw)) or seed)
    cfg = TrainConfig(seed=3, season_share=(("snow", 0.4),), pixel_size_share=((0.75, 1.0), 0.3))
    scene_at, _ = scene_source(cfg, 0.5)
    seeds = [scene_at(i) for i in range(2000)]
    assert seeds == [dataset.train_scene_seed(3, i) for i in range(2000)]
    sized = np.array([kw.get("pixel_size_m", np.nan) for _, kw in asked])
    snowy = np.array([kw.get("season") == "snow" for _, kw in asked])
    picked = ~np.isnan(sized)
    assert 0.28 <= picked.mean() <= 0.32
    assert sized[picked].min() >= 0.75 and sized[picked].max() <= 1.0
    # spread evenly over the range: each quarter of it gets about a quarter of the picked scenes
    quarters = np.histogram(sized[picked], bins=4, range=(0.75, 1.0))[0] / picked.sum()
    assert np.all(np.abs(quarters - 0.25) < 0.03), quarters
    # a scene picked for its pixel size draws its season as the engine does; of the rest, 40 % snow
    assert not snowy[picked].any() and 0.36 <= snowy[~picked].mean() <= 0.44


def test_mean_of_weight_files(init_weights, tmp_path):
    from models.weight_average import main as average_main
    from models.weight_average import mean_of_files

    meta, state = read_weights(init_weights)
    shifted = {k: v + 1.0 if v.is_floating_point() else v + 7 for k, v in state.items()}
    other = save_state(tmp_path / "other.pt", shifted, meta)
    out = mean_of_files([str(init_weights), str(other)], str(tmp_path / "mean.pt"), "two runs")
    mean_meta, mean = read_weights(out)
    for k, v in state.items():
        # floats halfway between the two (batch-norm statistics too); integer buffers from the last file
        want = v + 0.5 if v.is_floating_point() else v + 7
        assert torch.allclose(mean[k], want), k
    assert mean_meta.extra["history"][-1] == {"kind": "average", "of": [str(init_weights), str(other)], "note": "two runs"}
    assert mean_meta.own_floors() == meta.own_floors()  # floors are chosen again afterwards
    wider = save_weights(tmp_path / "wider.pt", build_unet(**{**SMALL, "widths": [w * 2 for w in SMALL["widths"]]}),
                         ModelMeta(version="0.0.1", arch_args={**SMALL, "widths": [w * 2 for w in SMALL["widths"]]}))
    with pytest.raises(ValueError, match="holds another network"):
        mean_of_files([str(wider), str(other)], str(tmp_path / "bad.pt"), "")
    assert average_main([str(init_weights), "--out", str(tmp_path / "one.pt")]) == 2  # one file is no mean
