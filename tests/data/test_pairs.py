"""Pairing images with masks, and reading them for real: by content, upright, 8-bit RGB and
{0, 1} masks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from floodcache.data import audit
from floodcache.data import pairs as data
from tests.helpers import picture, save, water


def test_pairs_come_in_natural_order(tmp_path):
    for seed, stem in enumerate(("10", "2", "1", "b", "a2", "a10")):
        save(tmp_path / "im" / f"{stem}.png", picture(seed), "PNG")
        save(tmp_path / "ma" / f"{stem}.png", water(seed), "PNG")
    pairs, problems = data.find_pairs(images=tmp_path / "im", masks=tmp_path / "ma")
    assert [p.image_id for p in pairs] == ["1", "2", "10", "a2", "a10", "b"]
    assert problems == []


def test_metadata_maps_names_and_finds_missing_and_unlisted_files(tmp_path):
    for seed, stem in enumerate(("1", "2", "10", "extra")):
        save(tmp_path / "Image" / f"{stem}.jpg", picture(seed), "JPEG")
    for seed, name in enumerate(("1.png", "water_of_2.png", "10.png", "11.png", "extra.png")):
        save(tmp_path / "Mask" / name, water(seed), "PNG")
    rows = ["1.jpg,1.png", "2.jpg,water_of_2.png", "10.jpg,10.png", "11.jpg,11.png", "3.jpg,3.png"]
    (tmp_path / "metadata.csv").write_text("\n".join(["Image,Mask", *rows]) + "\n")
    report = audit.audit_folder(tmp_path)
    assert [p.image_id for p in report.pairs] == ["1", "2", "3", "10", "11"]
    assert report.pairs[1].mask_path == tmp_path / "Mask" / "water_of_2.png"
    assert [(Path(r.image or r.mask).name, r.problem) for r in report.problems] == [
        ("3.jpg", "missing_image"),
        ("3.jpg", "missing_mask"),
        ("11.jpg", "missing_image"),
        ("extra.jpg", "unlisted_image"),
        ("extra.png", "unlisted_mask"),
    ]
    assert report.problems[2].mask == str(tmp_path / "Mask" / "11.png")
    assert report.excluded == {"3": ["missing_image", "missing_mask"], "11": ["missing_image"]}


def test_images_sharing_a_stem_are_both_kept_by_their_file_names(tmp_path):
    save(tmp_path / "Image" / "0.jpg", picture(0), "JPEG")
    save(tmp_path / "Image" / "0.png", picture(1), "PNG")
    for seed, name in enumerate(("0.png", "3.png")):
        save(tmp_path / "Mask" / name, water(seed), "PNG")
    (tmp_path / "metadata.csv").write_text("Image,Mask\n0.jpg,0.png\n0.png,3.png\n")
    report = audit.audit_folder(tmp_path)
    assert [(p.image_id, p.image_path.name, p.mask_path.name) for p in report.usable] == [
        ("0.jpg", "0.jpg", "0.png"),
        ("0.png", "0.png", "3.png"),
    ]
    assert [r.problem for r in report.problems] == ["shared_stem", "shared_stem"]


def test_one_image_listed_twice_under_any_spelling_names_both_lines(tmp_path):
    save(tmp_path / "Image" / "0.jpg", picture(0), "JPEG")
    for seed, name in enumerate(("0.png", "1.png", "2.png")):
        save(tmp_path / "Mask" / name, water(seed), "PNG")
    for rows in (["0.jpg,0.png", "./0.jpg,1.png"], ["0.jpg,0.png", "sub/../0.jpg,2.png"]):
        (tmp_path / "metadata.csv").write_text("\n".join(["Image,Mask", *rows]) + "\n")
        with pytest.raises(ValueError, match=r"line 3 lists .*0.jpg, the image line 2 lists"):
            data.find_pairs(tmp_path)


def test_a_symbolic_link_loop_listed_in_metadata_is_a_missing_file(tmp_path):
    save(tmp_path / "Image" / "0.jpg", picture(0), "JPEG")
    save(tmp_path / "Mask" / "0.png", water(0), "PNG")
    (tmp_path / "Image" / "loop.jpg").symlink_to("loop.jpg")
    (tmp_path / "metadata.csv").write_text("Image,Mask\n0.jpg,0.png\nloop.jpg,0.png\n")
    report = audit.audit_folder(tmp_path)
    assert report.excluded == {"loop": ["missing_image"]} and len(report.usable) == 1


@pytest.mark.parametrize(
    ("arguments", "error", "names"),
    [
        ({"data_dir": "nowhere"}, FileNotFoundError, "--data nowhere"),
        ({"images": "nowhere", "masks": "."}, FileNotFoundError, "--images"),
        ({"images": "."}, ValueError, "--masks"),
        ({}, ValueError, "--data"),
    ],
)
def test_missing_folders_name_the_flag_to_fix(tmp_path, monkeypatch, arguments, error, names):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(error, match=names):
        data.find_pairs(**arguments)


def test_kaggle_layout_without_mask_folder_names_it(tmp_path):
    (tmp_path / "Image").mkdir()
    with pytest.raises(FileNotFoundError, match="Mask"):
        data.find_pairs(tmp_path)


def test_ambiguous_stems_and_bad_metadata_header_are_errors(tmp_path):
    for name in ("0.jpg", "0.png"):
        save(tmp_path / "Image" / name, picture(0), "PNG")
    save(tmp_path / "Mask" / "0.png", water(0), "PNG")
    with pytest.raises(ValueError, match="stem '0'.*metadata.csv"):
        data.find_pairs(tmp_path)
    (tmp_path / "metadata.csv").write_text("file,label\n0.jpg,0.png\n")
    with pytest.raises(ValueError, match="Image,Mask"):
        data.find_pairs(tmp_path)


@pytest.mark.parametrize(
    ("content", "says"),
    [
        ("Image,Mask\ncafé.jpg,café.png\n".encode("latin-1"), r"is not UTF-8 text.*CSV UTF-8"),
        ("Image,Mask\n0.jpg,0.png\n".encode("utf-16"), r"is not UTF-8 text.*CSV UTF-8"),
        (b"Image,Mask\n0.jpg,0.png\n1.jpg\n", r": line 3 has no Mask name; give every row"),
        (b"Image,Mask\n,0.png\n", r": line 2 has no Image name"),
        (b"Image,Mask\n0.jpg,0\x00.png\n", r": line 2 has no Mask name but a NUL"),
        (b"Image,Mask\n0.jpg,0.png\n" + b"x" * 200_000 + b",1.png\n", r": line 3 is not CSV"),
    ],
    ids=["latin-1", "UTF-16", "short row", "no image", "NUL", "huge field"],
)
def test_a_metadata_csv_that_cannot_be_read_names_itself_and_the_fix(tmp_path, content, says):
    (tmp_path / "Image").mkdir()
    (tmp_path / "Mask").mkdir()
    (tmp_path / "metadata.csv").write_bytes(content)
    with pytest.raises(ValueError, match=rf"{tmp_path / 'metadata.csv'}.*{says}"):
        data.find_pairs(tmp_path)


@pytest.mark.parametrize(
    ("row", "names"),
    [
        ("../secret.jpg,0.png", "image ../secret.jpg"),
        ("0.jpg,../../secret.png", "mask ../../secret.png"),
        ("sub/../../secret.jpg,0.png", "image sub/../../secret.jpg"),
        ("{absolute},0.png", "image /"),
    ],
)
def test_metadata_naming_a_file_outside_its_folder_is_refused_unless_allowed(tmp_path, row, names):
    """A metadata.csv from elsewhere had any readable file decoded, and its preview cached."""
    folder = tmp_path / "data"
    save(folder / "Image" / "0.jpg", picture(0), "JPEG")
    save(folder / "Mask" / "0.png", water(0), "PNG")
    for secret in (folder / "secret.jpg", tmp_path / "secret.jpg"):
        save(secret, picture(1), "JPEG")
    save(tmp_path / "secret.png", water(1), "PNG")
    (folder / "Image" / "sub").mkdir()
    row = row.format(absolute=tmp_path / "secret.jpg")
    (folder / "metadata.csv").write_text(f"Image,Mask\n{row}\n")
    with pytest.raises(ValueError, match=rf"line 2 lists the {names}.*--allow-outside-paths"):
        data.find_pairs(folder)
    (pair,), _ = data.find_pairs(folder, allow_outside_paths=True)
    assert pair.image_path.is_file() and pair.mask_path.is_file()


def test_load_pair_returns_what_the_audit_read(zoo):
    images, masks = zoo
    image, mask = data.load_pair(data.Pair("exif", images / "exif.jpg", masks / "exif.png"))
    assert image.shape == (16, 12, 3) and mask.shape == (16, 12)
    assert mask.tolist() == (water(1001, 16, 12) > 0).astype(int).tolist()
    image, _ = data.load_pair(data.Pair("sixteen", images / "sixteen.png", masks / "sixteen.png"))
    assert image[..., 0].tolist() == picture(1005)[:, :, 0].tolist()  # x257 then /257


def test_load_pair_resizes_only_when_asked(zoo):
    images, masks = zoo
    small = data.Pair("small_mask", images / "small_mask.png", masks / "small_mask.png")
    with pytest.raises(ValueError, match="--on-mismatch resize"):
        data.load_pair(small)
    _, mask = data.load_pair(small, on_mismatch="resize")
    expected = np.kron(water(1014, 6, 8) > 0, np.ones((2, 2), bool)).astype(np.uint8)
    assert mask.shape == (12, 16) and (mask == expected).all()
    turned = data.Pair("turned_mask", images / "turned_mask.png", masks / "turned_mask.png")
    with pytest.raises(ValueError, match="aspect"):
        data.load_pair(turned, on_mismatch="resize")
    with pytest.raises(ValueError, match="no image file"):
        data.load_pair(data.Pair("no_image", None, masks / "no_image.png"))
    with pytest.raises(ValueError, match="--on-mismatch"):
        data.load_pair(small, on_mismatch="stretch")
