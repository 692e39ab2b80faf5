"""The released checkpoints, installed with the package as `mobilevit_utils._checkpoints`
(pyproject.toml maps this folder there): `mobilevit_utils.presets` reads them from the
installed package first, so presets work outside the repository and offline."""
