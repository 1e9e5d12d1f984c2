"""Domain-randomised training patches: tissue classes that match the labels, appearance drawn anew, physical bounds."""

import numpy as np
import pytest
import torch

from backpain_epi.segmentation.network import DEFAULT_CONFIG
from backpain_epi.segmentation.phantom import TISSUES, make_phantom
from backpain_epi.segmentation.synth import APPEARANCE, SynthRenderer, anatomy_bank, draw_anatomy, draw_habitus, label_of_tissue

from .conftest import COARSE, TINY_CONFIG

CONFIG = {**DEFAULT_CONFIG, **TINY_CONFIG}
SPACING = (2.4, 2.4, 5.0)


@pytest.fixture(scope="module")
def anatomy():
    return draw_anatomy(np.random.SeedSequence(3), spacing=SPACING)


def test_tissue_classes_give_exactly_the_phantom_labels():
    from backpain_epi.segmentation.phantom import _anatomy, draw_targets

    rng = np.random.default_rng(5)
    _, ff, labels, grid = _anatomy(rng, np.array(SPACING), draw_targets(np.random.default_rng(5)))
    assert np.array_equal(label_of_tissue(grid["tissue"]), labels)
    comp = labels == 1
    assert np.array_equal(grid["tissue"][comp] == TISSUES["intermat_left"], ff[comp] >= 0.5)  # InterMAT is its own class
    assert set(APPEARANCE) == set(TISSUES)


def test_the_tissue_record_leaves_the_phantoms_unchanged():
    a, b = make_phantom(11, protocol=COARSE), make_phantom(11, protocol=COARSE)
    assert np.array_equal(a.water, b.water) and np.array_equal(a.labels, b.labels)


def test_habitus_spans_round_to_flat_and_thin_to_thick():
    draws = [draw_habitus(np.random.default_rng(i)) for i in range(200)]
    fat = [d["fat_post"] for d in draws]
    assert min(fat) < 8 and max(fat) > 60
    assert min(d["muscle_power"] for d in draws) < 1.8 and max(d["muscle_power"] for d in draws) > 3.2
    assert any(d["back_gap_mm"] == 0 for d in draws) and any(d["back_gap_mm"] > 20 for d in draws)


def test_an_anatomy_holds_all_four_structures(anatomy):
    labels = anatomy.labels
    assert all((labels == lab).sum() > 20 for lab in (1, 2, 3, 4))
    assert len(anatomy.muscle_voxels) and len(anatomy.body_voxels) > len(anatomy.muscle_voxels)


def test_patches_have_the_network_shapes_and_partial_volume_targets(anatomy):
    render = SynthRenderer(CONFIG)
    rng = np.random.default_rng(0)
    for _ in range(4):
        p = render(anatomy, rng)
        assert p["image"].shape == (3, *CONFIG["roi_size"]) and p["soft"].shape == (5, *CONFIG["roi_size"])
        assert torch.allclose(p["soft"].sum(0), torch.ones(CONFIG["roi_size"]), atol=1e-5)
        ff = p["image"][0]
        assert float(ff.min()) >= 0 and float(ff.max()) <= 1 and torch.isfinite(p["image"]).all()


def test_appearance_is_drawn_anew_and_within_physical_bounds(anatomy):
    render = SynthRenderer(CONFIG)
    a = render(anatomy, np.random.default_rng(1))
    b = render(anatomy, np.random.default_rng(2))
    assert not torch.allclose(a["image"], b["image"])
    again = render(anatomy, np.random.default_rng(1))
    assert torch.equal(a["image"], again["image"]) and torch.equal(a["soft"], again["soft"])  # seeded
    # fat fraction governs both images: muscle is lean, subcutaneous fat is fat, whatever the draw
    means = {"muscle": []}
    for seed in range(12):
        p = render(anatomy, np.random.default_rng(100 + seed))
        psoas = (p["soft"][3] + p["soft"][4]) > 0.99
        if psoas.sum() > 5:
            means["muscle"].append(float(p["image"][0][psoas].mean()))
    assert means["muscle"] and max(means["muscle"]) < 0.5


def test_the_bank_is_cached_and_reproducible(tmp_path, monkeypatch):
    import backpain_epi.segmentation.synth as synth

    monkeypatch.setattr(synth, "draw_anatomy", lambda s, spacing=None, variant=1: draw_anatomy(s, spacing=SPACING, variant=variant))
    first = anatomy_bank(2, 9, progress=False, cache=tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["anatomy-9-0.npz", "anatomy-9-1.npz"]
    monkeypatch.setattr(synth, "draw_anatomy", lambda *a, **k: pytest.fail("drawn again instead of read from the cache"))
    again = anatomy_bank(2, 9, progress=False, cache=tmp_path)
    assert all(np.array_equal(a.tissue, b.tissue) for a, b in zip(first, again))


def test_training_on_domain_randomised_patches_runs_and_is_recorded(tmp_path, monkeypatch):
    import backpain_epi.segmentation.synth as synth
    from backpain_epi.segmentation.network import load_weights
    from backpain_epi.segmentation.train import TrainSettings, train_segmenter

    monkeypatch.setattr(synth, "draw_anatomy", lambda s, spacing=None, variant=1: draw_anatomy(s, spacing=SPACING, variant=variant))
    settings = TrainSettings(steps=2, n_phantoms=0, synth_fraction=1.0, n_anatomies=1, synth_workers=0,
                             synth_dark_fascia=0.5, config={**CONFIG, "label_resampling": "area"})
    info = train_segmenter(tmp_path / "w.pt", settings=settings, device="cpu", n_validation=0, progress=False)
    assert info["final_loss"] > 0 and info["settings"]["synth_fraction"] == 1.0
    assert info["settings"]["synth_dark_fascia"] == 0.5
    assert load_weights(tmp_path / "w.pt")[2]["settings"]["n_anatomies"] == 1


def test_without_deformation_a_patch_is_the_anatomy_around_its_centre(anatomy):
    from backpain_epi.segmentation.synth import RENDER_MM

    render = SynthRenderer(CONFIG, deform=False)
    rng = np.random.default_rng(4)
    tissue, centre = render._sample_geometry(anatomy, rng)
    axes = [(np.arange(n) - (n - 1) / 2) * r for n, r in zip(render.render_shape, RENDER_MM)]
    pts = np.stack(np.meshgrid(*axes, indexing="ij"), -1) + centre
    idx = np.rint(pts / anatomy.spacing).astype(int)
    inside = ((idx >= 0) & (idx < np.array(anatomy.tissue.shape))).all(-1)
    expected = np.zeros(render.render_shape, np.uint8)
    expected[inside] = anatomy.tissue[tuple(idx[inside].T)]
    assert (tissue.numpy() == expected).mean() > 0.98  # nearest-neighbour ties at voxel edges aside


@pytest.mark.slow
def test_left_stays_left_through_the_deformations(anatomy):
    render = SynthRenderer(DEFAULT_CONFIG, flip_z=0.5)  # patches wide enough for both sides
    rng = np.random.default_rng(7)
    checked = 0
    for _ in range(6):
        soft = render(anatomy, rng)["soft"]
        x = torch.arange(soft.shape[1], dtype=torch.float32)[:, None, None]
        mass = [float(soft[lab].sum()) for lab in (1, 2)]
        if min(mass) > 20:
            centre = [float((soft[lab] * x).sum()) / m for lab, m in zip((1, 2), mass)]
            assert centre[0] < centre[1]  # RAS: the patient's left (label 1) at lower x
            checked += 1
    assert checked >= 2


@pytest.mark.slow
def test_anatomy_variant_2_adds_intermat_geometry_and_leaves_variant_1_alone():
    from backpain_epi.errors import BackpainEpiError
    from backpain_epi.segmentation.phantom import TISSUES

    seed = np.random.SeedSequence(21)
    one, again = draw_anatomy(seed, spacing=SPACING), draw_anatomy(seed, spacing=SPACING, variant=1)
    two = draw_anatomy(seed, spacing=SPACING, variant=2)
    assert np.array_equal(one.tissue, again.tissue)
    assert not np.array_equal(one.tissue, two.tissue)
    fat = [np.isin(a.tissue, (TISSUES["intermat_left"], TISSUES["intermat_right"])).sum() for a in (one, two)]
    assert fat[0] != fat[1]
    with pytest.raises(BackpainEpiError, match="^variant: unknown anatomy variant 3"):
        anatomy_bank(1, 1, progress=False, variant=3)


def test_t1_weighted_fat_gain_and_leak_change_the_appearance_and_default_patches_stay_as_they_were(anatomy):
    from backpain_epi.errors import BackpainEpiError
    from backpain_epi.segmentation.synth import PD_FAT_GAIN, T1_FAT_GAIN

    default, explicit = SynthRenderer(CONFIG), SynthRenderer(CONFIG, fat_gain=PD_FAT_GAIN, fat_leak=0.0)
    a, b = default(anatomy, np.random.default_rng(4)), explicit(anatomy, np.random.default_rng(4))
    assert torch.equal(a["image"], b["image"])  # the stages' earlier patches reproduce
    pd_r, t1_r, leak_r = SynthRenderer(CONFIG), SynthRenderer(CONFIG, fat_gain=T1_FAT_GAIN), SynthRenderer(CONFIG, fat_leak=0.3)
    fat, lean = TISSUES["subcutaneous_fat"], (TISSUES["psoas_left"], TISSUES["psoas_right"])
    ratios = {"pd": [], "t1": []}
    for seed in range(16):
        tissue, _ = pd_r._sample_geometry(anatomy, np.random.default_rng(seed))
        muscle, subcut = torch.isin(tissue, torch.tensor(lean)), tissue == fat
        if muscle.sum() < 5 or subcut.sum() < 5:
            continue
        for name, r in (("pd", pd_r), ("t1", t1_r)):
            w, f = r._appearance(tissue, np.random.default_rng(1000 + seed))
            ratios[name].append(float((w + f)[subcut].mean() / (w + f)[muscle].mean()))
        w0, f0 = pd_r._appearance(tissue, np.random.default_rng(seed))
        w1, f1 = leak_r._appearance(tissue, np.random.default_rng(seed))
        assert torch.allclose(w0 + f0, w1 + f1, atol=1e-6)  # the leak moves signal, it makes none
        assert float((w1 - w0)[subcut].mean()) > 0 and bool((f1 <= f0 + 1e-7).all())
    assert len(ratios["pd"]) >= 8
    # T1 weighting: fat well above muscle water per proton, beyond what proton-density-like draws give
    assert max(ratios["t1"]) > 1.3 * max(ratios["pd"]) and np.median(ratios["t1"]) > np.median(ratios["pd"])
    for bad in ({"fat_gain": (2.0, 1.0)}, {"fat_gain": (0.0, 1.0)}, {"fat_leak": 0.9}):
        with pytest.raises(BackpainEpiError, match="fat_(gain|leak) .*(0 < LO <= HI|between 0 and 0.5)"):
            SynthRenderer(CONFIG, **bad)


def test_a_left_right_mirror_swaps_the_sides_so_left_stays_the_patients_left(anatomy):
    plain, mirrored = SynthRenderer(CONFIG, deform=False), SynthRenderer(CONFIG, deform=False, flip_x=1.0)
    t0, c0 = plain._sample_geometry(anatomy, np.random.default_rng(8))
    t1, c1 = mirrored._sample_geometry(anatomy, np.random.default_rng(8))
    assert np.allclose(c0, c1)
    l0, l1 = label_of_tissue(t0), label_of_tissue(t1)
    assert torch.equal(l1, torch.tensor([0, 2, 1, 4, 3], dtype=l0.dtype)[l0.long()].flip(0))
    wide = SynthRenderer(DEFAULT_CONFIG, flip_x=1.0)  # patches wide enough for both sides
    rng, checked = np.random.default_rng(7), 0
    for _ in range(6):
        lab = label_of_tissue(wide._sample_geometry(anatomy, rng)[0])
        xs = [torch.nonzero(lab == side)[:, 0].float() for side in (1, 2)]
        if min(len(x) for x in xs) > 20:
            assert float(xs[0].mean()) < float(xs[1].mean())  # RAS: the patient's left (label 1) still at lower x
            checked += 1
    assert checked >= 2
    # a renderer without the mirror draws exactly what it drew before the option existed
    a, b = SynthRenderer(CONFIG)(anatomy, np.random.default_rng(9)), SynthRenderer(CONFIG, flip_x=0.0)(anatomy, np.random.default_rng(9))
    assert torch.equal(a["image"], b["image"])


def test_the_phantom_patches_mirror_swaps_labels_and_soft_channels():
    from backpain_epi.segmentation.train import RandMirrorSidesd

    label = torch.zeros(1, 6, 4, 3, dtype=torch.float32)
    label[0, 0:2] = 1  # the left autochthon at low x
    label[0, 4:6, 0] = 3
    soft = torch.nn.functional.one_hot(label[0].long(), 5).permute(3, 0, 1, 2).float()
    ff = torch.arange(6, dtype=torch.float32)[None, :, None, None].expand(1, 6, 4, 3).clone()
    out = RandMirrorSidesd(["ff", "label", "soft"], prob=1.0)({"ff": ff, "label": label, "soft": soft})
    assert torch.equal(out["ff"], ff.flip(1))
    assert bool((out["label"][0, 4:6] == 2).all()) and bool((out["label"][0, 0:2, 0] == 4).all())
    assert torch.equal(out["soft"], torch.nn.functional.one_hot(out["label"][0].long(), 5).permute(3, 0, 1, 2).float())
    same = RandMirrorSidesd(["ff", "label", "soft"], prob=0.0)({"ff": ff, "label": label, "soft": soft})
    assert torch.equal(same["label"], label)


def test_dark_fascia_draws_the_sheath_dark_in_both_images_and_leaves_default_patches_as_they_were(anatomy):
    from backpain_epi.errors import BackpainEpiError

    a = SynthRenderer(CONFIG)(anatomy, np.random.default_rng(4))
    b = SynthRenderer(CONFIG, dark_fascia=0.0)(anatomy, np.random.default_rng(4))
    assert torch.equal(a["image"], b["image"])  # the stages' earlier patches reproduce
    plain, dark = SynthRenderer(CONFIG), SynthRenderer(CONFIG, dark_fascia=1.0)
    fascia, lean = TISSUES["fascia"], (TISSUES["lean_left"], TISSUES["lean_right"])
    ratio = {"plain": [], "dark": []}  # the sheath's signal (water + fat) over the lean muscle's
    for seed in range(16):
        tissue, _ = plain._sample_geometry(anatomy, np.random.default_rng(seed))
        sheath, muscle = tissue == fascia, torch.isin(tissue, torch.tensor(lean))
        if sheath.sum() < 5 or muscle.sum() < 5:
            continue
        for name, r in (("plain", plain), ("dark", dark)):
            w, f = r._appearance(tissue, np.random.default_rng(100 + seed))
            ratio[name].append(float((w + f)[sheath].mean() / (w + f)[muscle].mean()))
    assert len(ratio["dark"]) >= 4
    # dark: below the muscle in every draw, and well below the default (fatty, pd 0.3-1) sheath
    assert max(ratio["dark"]) < 1 and np.median(ratio["dark"]) < 0.75 * np.median(ratio["plain"])
    with pytest.raises(BackpainEpiError, match=r"^dark_fascia 1\.5: a probability between 0 and 1"):
        SynthRenderer(CONFIG, dark_fascia=1.5)
