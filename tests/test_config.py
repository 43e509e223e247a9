import pytest

from config import DEFAULT_PARAMS, ConfigError, MasksParams, Params, load_params, parse_sets


def test_repo_params_load_and_mirror_dataclasses():
    params = load_params()
    assert isinstance(params, Params)
    assert isinstance(params.masks, MasksParams)


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


def test_real_setup_params_load():
    real = load_params(DEFAULT_PARAMS.parent / "params" / "real.yaml")
    assert real.train.clip_model == "ViT-B-16" and real.train.clip_resolution == 320
    assert real.masks.generator == "sa1b" and real.evaluate.roots.cityscapes


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
