"""environment: paths in messages and results."""

from mobilevit_utils import environment


def test_paths_in_messages_are_relative_inside_the_repository_and_full_outside(
    tmp_path, monkeypatch
):
    """A notebook's output shows no machine's absolute path for the project's own files; a
    message about a folder elsewhere keeps the full path, so it can be found."""
    root = environment.project_root()
    monkeypatch.chdir(root / "notebooks")  # where a notebook runs
    assert environment.readable_path(root / "artifacts" / "runs" / "x") == "artifacts/runs/x"
    monkeypatch.chdir(tmp_path)  # a user's own folder, outside any checkout
    assert environment.readable_path(tmp_path / "runs" / "x") == "runs/x"  # the working dir
    elsewhere = tmp_path.parent / "elsewhere" / "x"
    assert environment.readable_path(elsewhere) == str(elsewhere.resolve())
    assert environment.display_path(elsewhere) == "x"  # committed results keep only the name
