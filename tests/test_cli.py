from click.testing import CliRunner

from cli import cli
from config import DEFAULT_PARAMS, load_params


def test_synth_masks_verify_through_the_cli(tmp_path):
    runner = CliRunner()
    world, shards = tmp_path / "world", tmp_path / "shards"
    result = runner.invoke(cli, ["synth", "--out", str(world), "--train", "4", "--val", "2",
                                 "--size", "48", "--web", "0"])
    assert result.exit_code == 0, result.output
    assert "4 train + 2 val" in result.output
    result = runner.invoke(cli, ["masks", "--input", str(world / "train" / "images"),
                                 "--out", str(shards), "--shard-size", "3"])
    assert result.exit_code == 0, result.output
    assert "4 written, 0 rejected" in result.output
    result = runner.invoke(cli, ["shards", "verify", str(shards)])
    assert result.exit_code == 0 and "ok" in result.output

    (shards / "train-000001.tar").write_bytes(b"garbage")
    result = runner.invoke(cli, ["shards", "verify", str(shards)])
    assert result.exit_code == 1
    assert "train-000001.tar: unreadable tar" in result.output


def test_user_errors_are_one_line(tmp_path):
    runner = CliRunner()
    result = runner.invoke(cli, ["masks", "--input", str(tmp_path / "missing"),
                                 "--out", str(tmp_path / "o")])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        f"Error: masks.input: folder not found: {tmp_path / 'missing'}"]
    result = runner.invoke(cli, ["synth", "--set", "synth.sise=3"])
    assert result.exit_code == 1 and "unknown key 'synth.sise'" in result.output


def test_train_official_is_the_train_recipe_through_train_officials_blocks(tmp_path):
    """`train --official`: train_official's out and blocks over train's recipe (with --set),
    its curves beside it; a plain run keeps train's blocks and the default curves' folder."""
    from train.commands import train_params

    params = tmp_path / "p.yaml"
    params.write_text("base: " + str(DEFAULT_PARAMS) + "\ntrain_official: {out: " +
                      str(tmp_path / "off") + ", dense_mode: naclip}\n")
    cfg = train_params(str(params), ("train.steps=7",), True, {"out": None})
    assert (cfg.out, cfg.live) == (str(tmp_path / "off"), str(tmp_path / "off" / "live"))
    assert (cfg.dense_mode, cfg.teacher_dense_mode, cfg.steps) == ("naclip", "maskclip", 7)
    assert train_params(str(params), (), True, {"out": "runs/o"}).out == "runs/o"
    plain = train_params(str(params), (), False, {"out": None})
    default = load_params().train
    assert (plain.out, plain.live, plain.dense_mode) == (default.out, default.live, "maskclip")
    assert plain.teacher_dense_mode == ""
