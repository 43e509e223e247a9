import hashlib
import json

import numpy as np
from PIL import Image

from config import SynthParams
from shards import rle
from synthetic.synth import caption, run, web_photo
from synthetic.world import CLASSES, IDS, render_scene


def _digest(root) -> str:
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file() and p.name != "params.json"):
        h.update(path.relative_to(root).as_posix().encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def test_same_seed_same_bytes_whatever_the_workers_other_seed_other_bytes(tmp_path):
    a, b, c = (tmp_path / n for n in "abc")
    run(SynthParams(out=str(a), train=3, val=2, web=4, size=48, seed=5, workers=1))
    run(SynthParams(out=str(b), train=3, val=2, web=4, size=48, seed=5, workers=2))
    run(SynthParams(out=str(c), train=3, val=2, web=4, size=48, seed=6, workers=1))
    assert _digest(a) == _digest(b)
    assert _digest(a) != _digest(c)


def test_layout_is_a_real_dataset(synth_root):
    names = (synth_root / "classes.txt").read_text().splitlines()
    assert len(names) >= 12 and len(set(names)) == len(names)
    assert {c.kind for c in CLASSES} == {"stuff", "thing"}
    images = sorted((synth_root / "train" / "images").glob("*.png"))
    assert len(images) == 12
    assert not (synth_root / "train" / "captions.jsonl").exists()  # PixelCLIP reads no text
    web = sorted((synth_root / "web" / "images").glob("*.png"))
    captions = [json.loads(line) for line in (synth_root / "web" / "captions.jsonl").open()]
    assert len(web) == 24 and [c["file_name"] for c in captions] == [p.name for p in web]
    assert all(any(n in c["caption"] for n in names) for c in captions)
    assert (synth_root / "contact_sheet.png").exists()

    for image in sorted((synth_root / "val" / "images").glob("*.png")):
        label = np.asarray(Image.open(synth_root / "val" / "labels" / image.name))
        assert label.dtype == np.uint8 and label.shape == (64, 64)
        assert label.max() < len(names)
        data = json.loads(image.with_suffix(".json").read_text())
        assert data["image"] == {"image_id": data["image"]["image_id"], "width": 64,
                                 "height": 64, "file_name": image.name}
        anns = data["annotations"]
        masks = rle.decode([a["segmentation"] for a in anns], 64, 64)
        assert len(masks) >= 2 and all(a["area"] == m.sum() for a, m in zip(anns, masks))
        expected = {"point_coords", "crop_box", "predicted_iou", "stability_score", "bbox"}
        assert expected <= set(anns[0])
        # masks are unlabeled regions, but each lies inside one semantic class
        for m in masks:
            assert len(np.unique(label[m])) == 1


def test_web_photo_names_what_it_shows():
    rng = np.random.default_rng(0)
    sides = set()
    for _ in range(40):
        scene = render_scene(rng, 64)
        photo, names = web_photo(rng, scene)
        assert photo.shape[0] == photo.shape[1] and photo.dtype == np.uint8
        sides.add(photo.shape[0])
        assert names and set(names) <= set(scene.names)
    assert 64 in sides and min(sides) < 40  # whole scenes and close-ups


def test_stuff_regions_hold_look_alike_patches_labelled_as_the_region():
    # sky carries snow-white patches ("clouds"): white pixels under the sky label, never all
    rng = np.random.default_rng(1)
    fractions = []
    for _ in range(20):
        scene = render_scene(rng, 64)
        sky = scene.label == IDS["sky"]
        if sky.sum() >= 200:
            fractions.append((scene.image[sky].min(axis=1) > 200).mean())
    fractions = np.array(fractions)
    assert len(fractions) >= 5 and 0.1 < fractions.mean() < 0.4 and fractions.max() < 0.6
    assert (fractions > 0.03).mean() >= 0.8


def test_caption_names_everything_it_is_given():
    rng = np.random.default_rng(0)
    names = ["sky", "grass", "brick wall", "car"]
    for _ in range(10):
        text = caption(rng, names)
        assert all(n in text for n in names)
