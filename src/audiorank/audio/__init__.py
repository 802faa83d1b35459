"""Audio data: the embedded corpus (one module per sound source), HEAR task folders, the front end.

- sources: :mod:`.events` (environmental sounds), :mod:`.instruments` (procedural instruments),
  :mod:`.speech` (source-filter speech), :mod:`.scenes` (multi-label scenes), all on the shared
  helpers of :mod:`.dsp`;
- :mod:`.tasks`: the tasks (:func:`make_task`), their disk cache, the on-the-fly pretraining pool
  (:func:`pretraining_pool`) and :func:`write_corpus` behind ``audiorank corpus``;
- :mod:`.hear`: :func:`read_hear_task` / :func:`write_hear_task` for the HEAR 2021 task format;
- :mod:`.frontend`: :class:`LogMel`, 64-bin log-mel spectrogram normalised by pool statistics.
"""

from .dsp import GENERATOR_VERSION, SAMPLE_RATE
from .frontend import LogMel
from .hear import HearTask, Split, read_hear_task, to_kfold, write_hear_task
from .tasks import CORPUS_DEFAULTS, TASKS, PretrainingPool, default_cache_dir, make_task, pretraining_pool, write_corpus

__all__ = [
    "CORPUS_DEFAULTS",
    "GENERATOR_VERSION",
    "SAMPLE_RATE",
    "TASKS",
    "HearTask",
    "LogMel",
    "PretrainingPool",
    "Split",
    "default_cache_dir",
    "make_task",
    "pretraining_pool",
    "read_hear_task",
    "to_kfold",
    "write_corpus",
    "write_hear_task",
]
