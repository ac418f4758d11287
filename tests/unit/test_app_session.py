"""The app's session without a UI."""

from dpexplorer.app import session


def test_examples_are_redistributable_files():
    for label, path in session.example_images():
        assert path.is_file() and "kodim" not in path.name
        assert "public domain" in label or "CC0" in label
