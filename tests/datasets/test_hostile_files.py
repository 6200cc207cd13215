"""Hostile files against the loaders: each is refused with an error that names the file,
skipped with a warning that names it, or loaded correctly; none runs code or allocates
what the file does not hold."""

import codecs
import gzip
import io
import os
import pickle
import struct
import tarfile

import numpy as np
import pytest
from PIL import Image

from sklearn_greedy.datasets import (
    load_cifar10,
    load_idx,
    load_image_folder,
    load_mnist,
    per_class_split,
)

# ---------------------------------------------------------------------------- IDX files


def _idx_header(code, shape):
    return bytes([0, 0, code, len(shape)]) + struct.pack(f">{len(shape)}I", *shape)


def _write(path, payload, compress=False):
    path.write_bytes(gzip.compress(payload) if compress else payload)
    return path


HOSTILE_IDX = {
    "empty file": (b"", "magic number is empty"),
    "bad magic": (b"\x12\x34\x08\x01\x00\x00\x00\x01\x05", "magic number 12340801"),
    "unknown dtype code": (b"\x00\x00\x07\x01\x00\x00\x00\x01\x05", "dtype code 0x07"),
    "zero dimensions": (b"\x00\x00\x08\x00\x05", "declares 0 dimensions"),
    "truncated header": (b"\x00\x00\x08\x03\x00\x00\x00\x02", "header needs 16 bytes"),
    # 65536**4 values is 2**64: with fixed-width arithmetic it wraps to 0 and would pass
    "wrapping shape": (_idx_header(0x08, (65536,) * 4), r"\(65536, .*\) too large for an"),
    "huge shape, tiny file": (_idx_header(0x08, (1000, 1000, 1000)), "needs 1000000000"),
    "too short": (_idx_header(0x08, (5,)) + b"\x01\x02", "holds 2 bytes of data"),
    "trailing data": (_idx_header(0x08, (2,)) + b"\x01\x02\x03", "holds 3 bytes of data"),
    "int32 data cut mid-value": (_idx_header(0x0C, (2,)) + bytes(6), "needs 8"),
    "zero dim with a huge rest": (
        _idx_header(0x08, (0, 2**32 - 1, 2**32 - 1, 2**32 - 1)),
        "too large for an array",
    ),
}


@pytest.mark.parametrize("compress", [False, True], ids=["plain", "gz"])
@pytest.mark.parametrize("case", list(HOSTILE_IDX))
def test_hostile_idx_is_refused_naming_the_file(tmp_path, case, compress):
    payload, message = HOSTILE_IDX[case]
    path = _write(tmp_path / "hostile-idx", payload, compress)
    if compress and case == "huge shape, tiny file":
        # refused from the header and the file size alone, before decompressing
        message = "more than a gzip file of"
    if compress and case == "trailing data":
        message = "holds more than 2 bytes of data"
    with pytest.raises(ValueError, match=message) as info:
        load_idx(path)
    assert "hostile-idx" in str(info.value)


def test_small_gz_cannot_make_the_reader_decompress_what_it_does_not_need(tmp_path, monkeypatch):
    # 16 MB of zeros behind a header that declares 10 bytes: the reader must stop after
    # 11 bytes, not inflate the whole stream first
    payload = _idx_header(0x08, (10,)) + bytes(16 << 20)
    path = _write(tmp_path / "bomb-idx.gz", payload, compress=True)
    assert path.stat().st_size < 100_000
    requested = []
    real_read = gzip.GzipFile.read

    def read(self, size=-1):
        requested.append(size)
        return real_read(self, size)

    monkeypatch.setattr(gzip.GzipFile, "read", read)
    with pytest.raises(ValueError, match="bomb-idx.gz.*holds more than 10 bytes"):
        load_idx(path)
    assert -1 not in requested and sum(requested) <= 4 + 4 + 11


@pytest.mark.parametrize("damage", ["truncated", "corrupt"])
def test_damaged_gzip_is_refused_naming_the_file(tmp_path, damage):
    images = np.arange(600, dtype=np.uint8) % 251
    data = bytearray(gzip.compress(_idx_header(0x08, (600,)) + images.tobytes()))
    if damage == "truncated":
        data = data[: len(data) // 2]
    else:
        data[len(data) // 2 : len(data) // 2 + 8] = b"\xff" * 8
    path = tmp_path / "damaged-idx.gz"
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"damaged-idx\.gz.*(truncated or corrupt|holds)"):
        load_idx(path)


def test_gzip_is_recognised_by_content_whatever_the_name(tmp_path):
    values = np.array([[1, -2], [3, 4]], dtype=np.int16)
    payload = _idx_header(0x0B, values.shape) + values.astype(">i2").tobytes()
    loaded = load_idx(_write(tmp_path / "no-suffix-idx2", payload, compress=True))
    np.testing.assert_array_equal(loaded, values)
    assert loaded.dtype == np.int16


@pytest.mark.parametrize(
    "images, labels, message",
    [
        (np.zeros((3, 4), np.uint8), np.zeros(3, np.uint8), "images file .* 2-D uint8"),
        (np.zeros((3, 2, 2), np.float32), np.zeros(3, np.uint8), "images file .* float32"),
        (np.zeros((3, 2, 2), np.uint8), np.zeros(3, np.float32), "labels file .* float32"),
        (np.zeros((3, 2, 2), np.uint8), np.zeros(2, np.uint8), "holds 3 images but labels"),
    ],
    ids=["2-D images", "float images", "float labels", "count mismatch"],
)
def test_load_mnist_refuses_what_mnist_is_not(tmp_path, images, labels, message):
    codes = {np.dtype(np.uint8): 0x08, np.dtype(np.float32): 0x0D}
    for name, array in (("train-images-idx3-ubyte", images), ("train-labels-idx1-ubyte", labels)):
        big_endian = array.astype(array.dtype.newbyteorder(">")).tobytes()
        _write(tmp_path / name, _idx_header(codes[array.dtype], array.shape) + big_endian)
    with pytest.raises(ValueError, match=message):
        load_mnist(tmp_path)


# ------------------------------------------------------------------- CIFAR-10 pickles


class _Payload:
    """Pickles as a call of ``func(*args)``: what a malicious batch would carry."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def _batch(directory, batch, protocol=2, name="test_batch"):
    with open(directory / name, "wb") as f:
        pickle.dump(batch, f, protocol=protocol)
    return directory


def _good(n=2):
    return {b"data": np.zeros((n, 3072), np.uint8), b"labels": list(range(n))}


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
@pytest.mark.parametrize("where", ["top level", "in the labels"])
def test_cifar_pickle_with_os_system_is_refused_and_not_run(tmp_path, protocol, where):
    marker = tmp_path / "pwned"
    payload = _Payload(os.system, f"touch {marker}")
    batch = payload if where == "top level" else {**_good(), b"labels": [0, payload]}
    _batch(tmp_path, batch, protocol)
    with pytest.raises(ValueError, match=r"test_batch.*global posix\.system.*never needs"):
        load_cifar10(tmp_path, "test")
    assert not marker.exists()


@pytest.mark.parametrize(
    "payload, refused",
    [
        (_Payload(eval, "1 + 1"), r"(__builtin__|builtins)\.eval"),
        (_Payload(getattr, _Payload(__import__, "os"), "system"), r"getattr|__import__"),
        (_Payload(bytes, 10**12), r"bytes with arguments"),
        (_Payload(io.FileIO, "/etc/hostname"), r"(_io|io)\.FileIO"),
        (_Payload(codecs.encode, "abc", "rot13"), "encoding 'rot13'"),
    ],
    ids=["eval", "getattr", "bytes(10**12)", "open a file", "codecs other than latin1"],
)
def test_cifar_pickle_with_other_globals_is_refused(tmp_path, payload, refused):
    _batch(tmp_path, {**_good(), b"batch_label": payload})
    with pytest.raises(ValueError, match=f"test_batch.*{refused}"):
        load_cifar10(tmp_path, "test")


@pytest.mark.parametrize(
    "batch, message",
    [
        ({**_good(3), b"labels": [0, 1]}, "holds 3 images but 2 labels"),
        ({**_good(2), b"labels": [0, 10]}, r"labels outside 0..9: \[10\]"),
        ({**_good(2), b"labels": [-1, 0]}, r"labels outside 0..9: \[-1\]"),
        ({**_good(2), b"labels": [0.5, 1.0]}, "b'labels' must be a list of ints"),
        ({**_good(2), b"labels": [[0], [1, 2]]}, "b'labels' must be a list of ints"),
        ({**_good(2), b"data": np.zeros((2, 3072), np.float32)}, "2-D uint8 array"),
        ({**_good(2), b"data": np.zeros((2, 3071), np.uint8)}, "3071 values per image"),
        ({b"data": np.zeros((0, 3072), np.uint8), b"labels": []}, "hold no image"),
        ([1, 2, 3], "not a CIFAR-10 python batch"),
    ],
    ids=[
        "count mismatch",
        "label 10",
        "label -1",
        "float labels",
        "ragged labels",
        "float data",
        "short rows",
        "no image",
        "not a dict",
    ],
)
def test_cifar_batch_contents_are_checked(tmp_path, batch, message):
    _batch(tmp_path, batch)
    with pytest.raises(ValueError, match=f"test_batch.*{message}|{message}.*test_batch"):
        load_cifar10(tmp_path, "test")


@pytest.mark.parametrize(
    "opcode, size",
    [(pickle.BINBYTES8, 2**40), (pickle.BINUNICODE8, 2**62), (pickle.BINSTRING, 2**31 - 1)],
    ids=["bytes8 of a TB", "unicode8 of 2**62", "binstring of 2 GB"],
)
def test_cifar_pickle_declaring_huge_strings_is_refused_without_allocating(tmp_path, opcode, size):
    width = "<i" if opcode == pickle.BINSTRING else "<Q"
    stream = b"\x80\x04" + opcode + struct.pack(width, size) + b"abc"
    (tmp_path / "test_batch").write_bytes(stream)
    with pytest.raises(ValueError, match=f"test_batch.*expected {size} bytes"):
        load_cifar10(tmp_path, "test")


def test_truncated_cifar_pickle_is_refused(tmp_path):
    data = pickle.dumps(_good(), protocol=2)
    (tmp_path / "test_batch").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="test_batch.*refused as a CIFAR-10 python batch"):
        load_cifar10(tmp_path, "test")


# ----------------------------------------------------------------------- image files


def _png(path, size=(8, 8), color=(10, 20, 30)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path)
    return path


def _truncated_jpeg(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.RandomState(0)
    buffer = io.BytesIO()
    Image.fromarray(rng.randint(0, 256, (32, 32, 3)).astype(np.uint8)).save(buffer, "JPEG")
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    return path


@pytest.mark.parametrize("limit", [64 * 64 - 1, 100], ids=["bomb warning", "bomb error"])
def test_decompression_bomb_in_image_folder_is_skipped_naming_it(tmp_path, monkeypatch, limit):
    # PIL warns above MAX_IMAGE_PIXELS and raises above twice that: both are skipped
    _png(tmp_path / "a" / "ok.png", size=(8, 8))
    _png(tmp_path / "a" / "zbomb.png", size=(64, 64))
    _png(tmp_path / "b" / "ok.png", size=(8, 8))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", limit)
    with pytest.warns(UserWarning, match=r"Skipped 1 files.*zbomb\.png \(decompression bomb"):
        X, y = load_image_folder(tmp_path, size=4)
    assert X.shape == (2, 3, 4, 4) and y.tolist() == [0, 1]


def test_truncated_jpeg_in_image_folder_is_skipped_naming_it(tmp_path):
    _png(tmp_path / "a" / "ok.png")
    _truncated_jpeg(tmp_path / "a" / "cut.jpg")
    _png(tmp_path / "b" / "ok.png")
    with pytest.warns(UserWarning, match=r"(?i)Skipped 1 files.*cut\.jpg \(.*truncated"):
        X, y = load_image_folder(tmp_path, size=4)
    assert y.tolist() == [0, 1]


def test_only_unreadable_files_in_a_class_is_an_error_naming_it(tmp_path):
    _png(tmp_path / "a" / "ok.png")
    _truncated_jpeg(tmp_path / "b" / "cut.jpg")
    with pytest.raises(ValueError, match=r"Class folder '.*/b' holds no readable image"):
        with pytest.warns(UserWarning, match="cut.jpg"):
            load_image_folder(tmp_path, size=4)


@pytest.mark.parametrize(
    "layout, error, message",
    [
        ("missing", FileNotFoundError, "is not a directory"),
        ("file", FileNotFoundError, "is not a directory"),
        ("empty", ValueError, "no class sub-folders"),
        ("empty class", ValueError, "empty_class.*no readable image"),
    ],
)
def test_empty_and_missing_folders(tmp_path, layout, error, message):
    root = tmp_path / "root"
    if layout == "file":
        root.write_text("not a folder")
    elif layout == "empty":
        root.mkdir()
    elif layout == "empty class":
        _png(root / "a" / "ok.png")
        (root / "empty_class").mkdir()
    with pytest.raises(error, match=message):
        load_image_folder(root, size=4)


def test_links_pipes_and_devices_in_image_folder(tmp_path):
    outside = tmp_path / "outside"
    _png(outside / "real.png", color=(200, 0, 0))
    (outside / "secret.txt").write_text("not an image")
    root = tmp_path / "root"
    _png(root / "a" / "0.png", color=(0, 0, 0))
    (root / "a" / "1_link.png").symlink_to(outside / "real.png")
    (root / "a" / "2_secret.png").symlink_to(outside / "secret.txt")
    (root / "a" / "3_broken.png").symlink_to(tmp_path / "nowhere.png")
    (root / "a" / "4_loop.png").symlink_to(root / "a" / "4_loop.png")
    os.mkfifo(root / "a" / "5_fifo.png")  # opening it would block: it must be ignored
    (root / "a" / "6_dev.png").symlink_to("/dev/zero")
    with pytest.warns(UserWarning, match=r"Skipped 1 files.*2_secret\.png"):
        X, y = load_image_folder(root, size=2)
    # the link to an image outside is followed and read; pipes, devices, broken links are not
    assert X.shape[0] == 2 and X[1, 0, 0, 0] == 200


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: per_class_split([0, 0, 1, 1], True), "'n_per_class' parameter"),
        (lambda: per_class_split([0, 0, 1, 1], 1.0), "'n_per_class' parameter"),
        (lambda: per_class_split([0, 0, 1, 1], 1, n_splits=0), "'n_splits' parameter"),
        (lambda: per_class_split([[0, 0], [1, 1]], 1), r"y must be a non-empty 1-D .*\(2, 2\)"),
        (lambda: per_class_split([], 1), r"y must be a non-empty 1-D"),
        (lambda: load_image_folder(".", max_per_class=0), "'max_per_class' parameter"),
        (lambda: load_image_folder(".", grayscale="yes"), "'grayscale' parameter"),
        (lambda: load_cifar10(".", max_per_class=True), "'max_per_class' parameter"),
        (lambda: load_idx(3), "'path' parameter of load_idx"),
        (lambda: load_mnist(".", kind="valid"), "'kind' parameter of load_mnist"),
    ],
    ids=[
        "n_per_class=True",
        "n_per_class=1.0",
        "n_splits=0",
        "2-D y",
        "empty y",
        "max_per_class=0",
        "grayscale='yes'",
        "cifar max_per_class=True",
        "idx path=3",
        "mnist kind",
    ],
)
def test_loader_arguments_are_validated_when_called(call, message):
    with pytest.raises(ValueError, match=message):
        call()


# ------------------------------------------------------------ CIFAR-10 folders and tars


def test_cifar_folder_skips_bombs_wrong_sizes_and_truncated_files(tmp_path, monkeypatch):
    root = tmp_path / "cifar"
    _png(root / "test" / "cat" / "0.png", size=(32, 32))
    _png(root / "test" / "cat" / "1_big.png", size=(64, 64))
    _png(root / "test" / "dog" / "0_small.png", size=(16, 16))
    _truncated_jpeg(root / "test" / "dog" / "1_cut.jpg")
    _png(root / "test" / "dog" / "2.png", size=(32, 32))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 2000)
    with pytest.warns(UserWarning, match=r"Skipped 3 files") as record:
        X, y = load_cifar10(root, "test")
    message = str(record[0].message)
    assert "1_big.png (decompression bomb" in message
    assert "0_small.png (16x16, not 32x32)" in message and "1_cut.jpg" in message
    assert X.shape == (2, 3, 32, 32) and y.tolist() == [3, 5]


def test_cifar_folder_with_nothing_readable_is_an_error(tmp_path):
    _truncated_jpeg(tmp_path / "test" / "cat" / "cut.jpg")
    with pytest.raises(ValueError, match="No readable CIFAR-10 image"):
        with pytest.warns(UserWarning, match="cut.jpg"):
            load_cifar10(tmp_path, "test")


def _tar_member(tar, name, data, kind=tarfile.REGTYPE, linkname=""):
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.size = kind, linkname, len(data)
    tar.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)


def _png_bytes(size=(32, 32), color=(1, 2, 3)):
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, "PNG")
    return buffer.getvalue()


def test_cifar_tar_traversal_links_and_large_members(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    archive = tmp_path / "data" / "cifar.tar.gz"
    archive.parent.mkdir()
    with tarfile.open(archive, "w:gz") as tar:
        _tar_member(tar, "test/cat/0.png", _png_bytes(color=(9, 9, 9)))
        _tar_member(tar, "../../test/dog/escape.png", _png_bytes())
        _tar_member(tar, "/tmp/test/dog/absolute.png", _png_bytes())
        _tar_member(tar, "test/dog/link.png", b"", tarfile.SYMTYPE, "/etc/passwd")
        _tar_member(tar, "test/dog/hard.png", b"", tarfile.LNKTYPE, "test/cat/0.png")
        _tar_member(tar, "test/dog/huge.png", bytes(2 << 20))
    with pytest.warns(UserWarning, match=r"Skipped 1 files.*huge\.png \(2097152 bytes"):
        X, y = load_cifar10(archive.parent, "test")
    # the members are read in memory, never extracted: names cannot write anywhere, and
    # links are not followed
    assert sorted(y.tolist()) == [3, 5, 5] and X[y == 3][0, 0, 0, 0] == 9
    assert not (tmp_path.parent / "test").exists() and not os.path.exists("/tmp/test/dog")


@pytest.mark.parametrize("damage", ["truncated", "not a tar"])
def test_damaged_cifar_archive_is_refused_naming_it(tmp_path, damage):
    archive = tmp_path / "cifar.tar.gz"
    if damage == "truncated":
        buffer = io.BytesIO()
        rng = np.random.RandomState(0)
        with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
            for i in range(20):
                noise = rng.randint(0, 256, (32, 32, 3)).astype(np.uint8)
                image = io.BytesIO()
                Image.fromarray(noise).save(image, "PNG")
                _tar_member(tar, f"test/cat/{i}.png", image.getvalue())
        archive.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    else:
        archive.write_bytes(b"hello, I am not an archive" * 100)
    with pytest.raises(ValueError, match=r"cifar\.tar\.gz.*not a readable tar archive"):
        load_cifar10(archive, "test")


def test_16_bit_grey_images_are_scaled_not_clipped(tmp_path):
    from sklearn_greedy.datasets import ImageFolderDataset, load_image_folder

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    values = np.array([[30000, 1000], [65535, 0]], dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "a" / "x.png")
    Image.fromarray(values // 2).save(tmp_path / "b" / "y.png")
    X, _ = load_image_folder(tmp_path, size=(2, 2), grayscale=True)
    # 30000 and 1000 of 65535 stay apart (PIL's conversion would make both 255)
    assert X[0, 0].tolist() == [[117, 4], [255, 0]]
    assert X[1, 0].tolist() == [[58, 2], [127, 0]]
    image, _ = ImageFolderDataset(tmp_path)[0]
    assert image[:, 0, 0].tolist() == [117, 117, 117]


def test_32_bit_float_images_are_refused_naming_the_file(tmp_path):
    from sklearn_greedy.datasets import ImageFolderDataset

    (tmp_path / "a").mkdir()
    Image.fromarray(np.full((4, 4), 0.5, dtype=np.float32)).save(tmp_path / "a" / "f.tif")
    with pytest.raises(ValueError, match=r"f\.tif.*'F' image .*convert it to 8 or 16 bits"):
        ImageFolderDataset(tmp_path)[0]


def test_a_float64_memmap_beyond_float32_is_named(tmp_path):
    from sklearn_greedy import GreedyLayerwiseCNNClassifier

    X = np.memmap(tmp_path / "x.dat", dtype=np.float64, mode="w+", shape=(40, 1, 8, 8))
    X[:] = np.random.RandomState(0).rand(*X.shape)
    X[3, 0, 0, 0] = 1e300  # finite in float64, inf in the network's float32
    X.flush()
    clf = GreedyLayerwiseCNNClassifier(n_layers=1, width=4, max_epochs=1)
    with pytest.raises(ValueError, match="beyond the float32 range"):
        clf.fit(X, np.arange(40) % 2)
    assert not hasattr(clf, "model_")
