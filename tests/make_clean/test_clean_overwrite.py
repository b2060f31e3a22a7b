"""src.make_clean never replaces what the user has unless asked (overwrite=true), and never writes into the clip."""

from __future__ import annotations

import imageio.v3 as iio
import pytest

from src.make_clean.__main__ import entry
from tests.make_clean.conftest import rain_clip, run_cli


@pytest.fixture
def frames_dir(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, f in enumerate(rain_clip(6, 8, 10, seed=1)):
        iio.imwrite(folder / f"{i:03d}.png", f)
    return folder


def test_existing_output_or_record_refused_unless_overwrite(frames_dir, tmp_path, capsys):
    out = tmp_path / "clean.png"
    out.write_bytes(b"the user's image")
    assert run_cli(entry, [f"input={frames_dir}", f"output={out}", "frames=4"]) == 2
    assert f"{out}: the clean image (or its .json record) already exists" in capsys.readouterr().err
    assert out.read_bytes() == b"the user's image"

    out.unlink()
    record = tmp_path / "clean.json"
    record.write_text("{}")
    assert run_cli(entry, [f"input={frames_dir}", f"output={out}", "frames=4"]) == 2
    assert f"{record}: the clean image (or its .json record) already exists" in capsys.readouterr().err
    assert record.read_text() == "{}" and not out.exists()

    assert run_cli(entry, [f"input={frames_dir}", f"output={out}", "frames=4", "overwrite=true"]) == 0
    assert iio.imread(out).shape == (8, 10, 3) and '"frames": 4' in record.read_text()


def test_output_inside_the_frame_folder_is_refused(frames_dir, capsys):
    names = sorted(p.name for p in frames_dir.iterdir())
    for out in (frames_dir / "clean.png", frames_dir / "sub" / "clean.png"):
        assert run_cli(entry, [f"input={frames_dir}", f"output={out}", "overwrite=true"]) == 2
        assert "lies inside the input clip" in capsys.readouterr().err
    assert sorted(p.name for p in frames_dir.iterdir()) == names
