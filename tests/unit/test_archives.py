"""Archives given as data: an unsafe one (a `../` path, an absolute link), one cut short, or
one that is not a tar at all is a one-line `DataError`, and nothing is left half-extracted:
extraction goes to a temporary folder, renamed into place once whole."""

import io
import tarfile

import pytest
from helpers import learnable_images, write_image_tree

from mobilevit_utils import data


def png_bytes():
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), (200, 0, 0)).save(buffer, format="PNG")
    return buffer.getvalue()


def add_file(tar, name, payload):
    info = tarfile.TarInfo(name)
    info.size = len(payload)
    tar.addfile(info, io.BytesIO(payload))


def good_tar(path, tree):
    with tarfile.open(path, "w") as tar:
        tar.add(tree, arcname="images")
    return path


def extracted(project):
    folder = project / "data" / "extracted"
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def refused(path, says):
    with pytest.raises(data.DataError) as error:
        data.load_dataset(path)
    message = str(error.value)
    assert "\n" not in message and "nothing was extracted" in message
    for part in [says] if isinstance(says, str) else says:
        assert part in message, message
    return message


def test_unsafe_archives_are_refused_in_one_line(project):
    image = png_bytes()
    escaping = project / "escaping.tar"
    with tarfile.open(escaping, "w") as tar:
        for i in range(4):
            add_file(tar, f"images/train/a/{i}.png", image)
            add_file(tar, f"images/train/b/{i}.png", image)
        add_file(tar, "../../outside.png", image)
    refused(escaping, says=["unsafe member", "outside.png", "inside its own folder"])
    linked = project / "linked.tar"
    with tarfile.open(linked, "w") as tar:
        add_file(tar, "images/train/a/0.png", image)
        link = tarfile.TarInfo("images/train/a/passwd.png")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(link)
    refused(linked, says=["unsafe member", "passwd.png", "absolute path"])
    assert not (project.parent / "outside.png").exists()
    assert not (project / "outside.png").exists()
    assert extracted(project) == []  # not even the members before the unsafe one


def test_a_truncated_or_foreign_archive_is_one_line_and_leaves_nothing(project):
    tree = write_image_tree(project / "tree" / "train", *learnable_images(6), ["a", "b", "c"])
    whole = good_tar(project / "whole.tar", tree.parent).read_bytes()
    (project / "cut").mkdir()
    (project / "cut" / "cut.tar").write_bytes(whole[: len(whole) // 2 + 100])  # mid-member
    refused(project / "cut", says="cut short")
    (project / "junk.tar").write_bytes(b"this is not a tar archive at all" * 40)
    refused(project / "junk.tar", says="not a readable tar archive")
    with tarfile.open(project / "cut.tar.gz", "w:gz") as tar:
        tar.add(tree.parent, arcname="images")
    gz = (project / "cut.tar.gz").read_bytes()
    (project / "cut.tar.gz").write_bytes(gz[: len(gz) // 2])
    refused(project / "cut.tar.gz", says="cut short")
    assert extracted(project) == []


def test_a_good_archive_is_extracted_once_whole(project):
    tree = write_image_tree(project / "tree" / "train", *learnable_images(6), ["a", "b", "c"])
    archive = good_tar(project / "photos.tar", tree.parent)
    first = data.load_dataset(archive, validation_split=0.25)
    assert first.class_names == ("a", "b", "c") and len(first.y_train) + len(first.y_val) == 18
    assert extracted(project) == ["photos"]
    assert (project / "data" / "extracted" / "photos" / ".complete").exists()
    # An older version's extraction cut short (no .complete) is replaced, not trusted.
    (project / "data" / "extracted" / "photos" / ".complete").unlink()
    (project / "data" / "extracted" / "photos" / "images" / "train" / "a").rename(
        project / "data" / "extracted" / "photos" / "gone"
    )
    again = data.load_dataset(archive, validation_split=0.25)
    assert again.class_names == ("a", "b", "c") and extracted(project) == ["photos"]
