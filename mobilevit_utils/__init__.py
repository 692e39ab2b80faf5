"""mobilevit_utils: MobileViT (Mehta & Rastegari, ICLR 2022) for Keras 3, with the data,
training, evaluation and TFLite-export machinery behind the mobilevit-keras notebooks.

Importing the package registers its layers, so `keras.saving.load_model(path, safe_mode=True)`
can rebuild saved MobileViT models. Choose the backend (`KERAS_BACKEND`) before importing it.
"""

__version__ = "0.1.0"

import os as _os
import sys as _sys

from mobilevit_utils.environment import backend_problem as _backend_problem
from mobilevit_utils.environment import quiet_stderr as _quiet_stderr

if _problem := _backend_problem():
    if _sys.argv[:1] == ["-m"] or _os.path.basename(_sys.argv[0]) == "mobilevit":
        # The command line (`python -m mobilevit_utils`, `mobilevit`): one line, exit status 2.
        print(f"error: {_problem}", file=_sys.stderr)
        raise SystemExit(2)
    raise ImportError(_problem)

_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# TensorFlow prints CUDA-probing and oneDNN notices from C++ at import and first use, which
# TF_CPP_MIN_LOG_LEVEL no longer silences; set MOBILEVIT_VERBOSE=1 to see them.
with _quiet_stderr():
    import keras as _keras  # noqa: F401

from mobilevit_utils import layers  # noqa: E402,F401  (registers the serialisable layers)
