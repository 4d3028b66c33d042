"""An output folder holds only floodcache's outputs; a path built from an option stays in
its folder."""

from __future__ import annotations

import pytest

from floodcache.utils.outputs import inside, plain_name, refuse_foreign


@pytest.mark.parametrize("name", ["..", ".", "", "../../x", "a/b", "/etc", "a\\b"])
def test_a_name_that_leaves_its_folder_is_refused_naming_the_option(name):
    with pytest.raises(ValueError, match="--name .* not a plain name"):
        plain_name(name, "--name")


def test_a_path_built_from_an_option_stays_inside_its_folder(tmp_path):
    assert inside(tmp_path, "flood.h5", "--name") == tmp_path / "flood.h5"
    for name in ("..", "../x", str(tmp_path.parent / "x")):
        with pytest.raises(ValueError, match=f"--name .* outside {tmp_path}"):
            inside(tmp_path, name, "--name")


def test_a_folder_holding_the_users_files_is_refused(tmp_path):
    (tmp_path / "figures").mkdir()
    (tmp_path / "report.md").write_text("ours")
    (tmp_path / ".report.md.123-abc.tmp").write_text("left by a killed writer")
    refuse_foreign(tmp_path, lambda path: path.name == "report.md", "--out")  # all ours
    (tmp_path / "figures" / "holiday.jpg").write_bytes(b"the user's")
    with pytest.raises(FileExistsError, match="holds figures/holiday.jpg .*choose another --out"):
        refuse_foreign(tmp_path, lambda path: path.name == "report.md", "--out")
    assert (tmp_path / "figures" / "holiday.jpg").read_bytes() == b"the user's"
    refuse_foreign(tmp_path / "new", lambda path: False, "--out")  # nothing there yet
    with pytest.raises(FileExistsError, match="is a file, not a folder"):
        refuse_foreign(tmp_path / "report.md", lambda path: True, "--out")
