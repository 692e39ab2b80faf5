"""mobilevit_utils: MobileViT (Mehta & Rastegari, ICLR 2022) for Keras 3, with the data,
training, evaluation and TFLite-export machinery behind the mobilevit-keras notebooks."""

__version__ = "0.1.0"
