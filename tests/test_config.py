import pytest

from config import DEFAULT_PARAMS, ConfigError, MasksParams, Params, load_params, parse_sets


def _leaves(tree: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(_leaves(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = list(value) if isinstance(value, tuple) else value
    return out


@pytest.mark.parametrize("name, base", [("real.yaml", "params.yaml"),
                                        ("real-convnext.yaml", "params/real.yaml")])
def test_setup_files_state_only_what_differs_from_their_base(name, base):
    """A key written in params/real.yaml (or real-convnext.yaml) changes its base's value:
    nothing is repeated, so the files cannot drift apart."""
    import yaml

    from config import to_dict

    raw = yaml.safe_load((DEFAULT_PARAMS.parent / "params" / name).read_text())
    raw.pop("base", None)
    written = _leaves(raw)
    inherited = _leaves(to_dict(load_params(DEFAULT_PARAMS.parent / base)))
    assert written and set(written) <= set(inherited)
    assert [k for k, v in written.items() if inherited[k] == v] == []


def test_base_files_are_merged_and_bad_ones_are_one_line(tmp_path):
    (tmp_path / "a.yaml").write_text("train:\n  steps: 7\n  lr: 0.5\n")
    (tmp_path / "b.yaml").write_text("base: a.yaml\ntrain:\n  steps: 9\n")
    params = load_params(tmp_path / "b.yaml")
    assert isinstance(params, Params) and isinstance(params.masks, MasksParams)
    assert (params.train.steps, params.train.lr) == (9, 0.5)
    (tmp_path / "c.yaml").write_text("base: c.yaml\n")
    with pytest.raises(ConfigError, match="at most 5 deep"):
        load_params(tmp_path / "c.yaml")
    (tmp_path / "d.yaml").write_text("- a list\n")
    with pytest.raises(ConfigError, match="d.yaml: expected a mapping"):
        load_params(tmp_path / "d.yaml")


def test_unknown_key_and_wrong_type_are_one_line_errors(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("masks:\n  shard_sise: 3\n")
    with pytest.raises(ConfigError, match=r"p.yaml: unknown key 'masks.shard_sise'"):
        load_params(path)
    path.write_text("masks:\n  shard_size: lots\n")
    with pytest.raises(ConfigError, match="'masks.shard_size' must be int"):
        load_params(path)
    with pytest.raises(ConfigError, match="not found"):
        load_params(tmp_path / "missing.yaml")


def test_overrides_are_typed_and_checked(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("synth:\n  train: 5\n")
    params = load_params(path, parse_sets(["masks.sam.points_per_side=8", "synth.size=32"]))
    assert params.masks.sam.points_per_side == 8 and params.synth.size == 32
    assert params.synth.train == 5
    assert load_params(path, parse_sets(["train.lr=1e-3"])).train.lr == 0.001
    with pytest.raises(ConfigError, match="unknown key 'masks.nope'"):
        load_params(path, {"masks.nope": 1})
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_sets(["novalue"])


def test_params_yaml_mirrors_the_dataclass_defaults():
    from config import to_dict

    assert to_dict(load_params()) == to_dict(Params())


def test_real_setup_is_the_official_configuration():
    """params/real.yaml is the official ViT-B/16 config (configs/pixelclip_vit_base.yaml and
    its SA-1B mapper); params/real-convnext.yaml the official ConvNeXt-B one."""
    from train.optim import lr_factor

    real = load_params(DEFAULT_PARAMS.parent / "params" / "real.yaml")
    t, e = real.train, real.evaluate
    assert t.clip_model == e.clip_model == "ViT-B-16-quickgelu"  # OpenAI weights: QuickGELU
    assert t.dense_mode == e.dense_mode == "pixelclip"
    assert (t.clip_resolution, t.mask_resolution, e.resolution, e.feature_size) == (320, 256,
                                                                                   320, 64)
    assert (t.num_prompts, t.prompt_length, t.batch_size, t.steps) == (64, 4, 48, 10000)
    assert (t.lr, t.lr_visual_mult, t.lr_prompt_mult, t.weight_decay) == (2e-4, 0.01, 10, 1e-4)
    assert (t.grad_clip, t.momentum, t.logit_scale, t.sinkhorn_iters) == (0.01, 0.999, 100, 3)
    assert t.trainable == "attention" and t.warmup_steps == 0 and t.visual_delay_steps == 0
    # detectron2 WarmupCosineLR with BASE_LR_END / BASE_LR = 0.5: 0.75 halfway, 0.5 at the end
    factor = [lr_factor(s, t.steps, t.warmup_steps, t.end_lr_factor) for s in (0, 5000, 10000)]
    assert factor == pytest.approx([1.0, 0.75, 0.5])
    assert (t.crop, t.resize_short, t.resize_max, t.crop_size) == ("official", 1024, 1333, 640)
    assert t.color_aug_ssd and t.strong_aug and not t.antialias
    assert (t.jitter, t.hue_jitter, t.jitter_p, t.grayscale_p, t.blur_p) == (0.5, 0.25, 0.8,
                                                                            0.2, 0.5)
    assert t.blur_sigma == (0.1, 2.0) and t.cutout == (0.1, 0.5)
    assert real.masks.generator == "sa1b" and e.roots.cityscapes and not e.synthetic
    # the official test mapper (ResizeShortestEdge 640, max 2560), then plain bilinear to 320²
    assert (e.resize_short, e.resize_max, e.antialias) == (640, 2560, False)
    convnext = load_params(DEFAULT_PARAMS.parent / "params" / "real-convnext.yaml")
    c = convnext.train
    assert c.clip_model == convnext.evaluate.clip_model == "convnext_base_w_320"
    assert (c.clip_resolution, convnext.evaluate.resolution) == (640, 640)
    assert (convnext.evaluate.resize_short, convnext.evaluate.antialias) == (640, False)
    assert c.trainable == "full" and c.logit_scale == 1.0
    assert c.out != t.out and convnext.evaluate.metrics != e.metrics


def test_resolve_device_names_the_key():
    import torch

    from config import resolve_device

    assert resolve_device("cpu", "x.device") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto", "x.device").type == expected
    with pytest.raises(ConfigError, match="x.device: 'gpu' is not auto, cpu or cuda"):
        resolve_device("gpu", "x.device")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="x.device: 'cuda:1' requested but no CUDA"):
            resolve_device("cuda:1", "x.device")
