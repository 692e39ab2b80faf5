"""Training: recipes, compiling, callbacks, resumable run folders, fine-tuning, and `train`.

One module per role; every name is also importable from here (`training.train`, ...):

- `recipes`: `TrainConfig` (a run's settings, plain data), `RECIPES`, `get_recipe`.
- `compile`: a recipe to a compiled model: schedule, optimizer, loss, metrics, `build_model`,
  the dtype policy and distribution it is built under, `hardware_warnings`.
- `callbacks`: what `fit` runs with (`make_callbacks`): backup, checkpoint, history.csv
  (`CSVLogger`, Keras' written atomically), weight averages, per-epoch lines.
- `runs`: run folders (created, resumed, finished, read back) and their files, marked as runs
  and locked while a process trains in them (`RunClaim`); `RunMetadata`
  (`mobilevit_utils.run_files`) is metadata.json's schema.
- `journal`: the resume state: an epoch's files committed together, recovered on resume, and
  what the run was started with (a resume with other data or another recipe is refused).
- `finetune`: starting from a trained model (`init_from`): the source, its weights, and the
  phases (the new head alone, then every layer).
- `loop`: `train` itself.
- `tutorial`: what only the notebooks use (`find_run`, `lr_curve`, `epochs_within`).
"""

from mobilevit_utils.run_files import RunMetadata
from mobilevit_utils.training.callbacks import (
    BackupAndRestore,
    CSVLogger,
    DynamicConvTemperature,
    EpochClockCallback,
    EpochLogger,
    ModelCheckpoint,
    WeightAverage,
    best_logged,
    make_callbacks,
)
from mobilevit_utils.training.compile import (
    build_model,
    compile_model,
    distribution_scope,
    dtype_policy,
    hardware_warnings,
    make_loss,
    make_metrics,
    make_optimizer,
    make_schedule,
    uses_soft_labels,
)
from mobilevit_utils.training.finetune import (
    HEAD_LAYERS,
    Phase,
    Start,
    init_source,
    source_variant,
    transfer_weights,
)
from mobilevit_utils.training.journal import EpochJournal, ResumeError, recorded_start
from mobilevit_utils.training.loop import fit_class_weight, train
from mobilevit_utils.training.recipes import RECIPES, TrainConfig, get_recipe
from mobilevit_utils.training.runs import (
    RunClaim,
    RunExistsError,
    RunInUseError,
    fit_seconds,
    float32_checkpoint,
    load_run,
    prepare_run_dir,
    read_history,
    run_finished,
)
from mobilevit_utils.training.tutorial import (
    NOTEBOOK_RUN,
    RELEASED_PRESET,
    epochs_within,
    find_run,
    lr_curve,
)

__all__ = [
    "HEAD_LAYERS",
    "NOTEBOOK_RUN",
    "RECIPES",
    "RELEASED_PRESET",
    "BackupAndRestore",
    "CSVLogger",
    "DynamicConvTemperature",
    "EpochClockCallback",
    "EpochJournal",
    "EpochLogger",
    "ModelCheckpoint",
    "Phase",
    "ResumeError",
    "RunClaim",
    "RunExistsError",
    "RunInUseError",
    "RunMetadata",
    "Start",
    "TrainConfig",
    "WeightAverage",
    "best_logged",
    "build_model",
    "compile_model",
    "distribution_scope",
    "dtype_policy",
    "epochs_within",
    "find_run",
    "fit_class_weight",
    "fit_seconds",
    "float32_checkpoint",
    "get_recipe",
    "hardware_warnings",
    "init_source",
    "load_run",
    "lr_curve",
    "make_callbacks",
    "make_loss",
    "make_metrics",
    "make_optimizer",
    "make_schedule",
    "prepare_run_dir",
    "read_history",
    "recorded_start",
    "run_finished",
    "source_variant",
    "train",
    "transfer_weights",
    "uses_soft_labels",
]
