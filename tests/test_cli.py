from click.testing import CliRunner

from cli import cli


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
