"""Audio data: the embedded procedural corpus, HEAR task folders, and the log-mel front end.

- :mod:`.corpus`: seeded generators (environment, music, speech-like, scenes), the six tasks
  (:func:`make_task`), the on-the-fly pretraining pool (:func:`pretraining_pool`) and
  :func:`corpus_command` behind ``audiorank corpus``;
- :mod:`.hear`: :func:`read_hear_task` / :func:`write_hear_task` for the HEAR 2021 task format;
- :mod:`.frontend`: :class:`LogMel`, 64-bin log-mel spectrogram normalised by pool statistics.
"""

from .corpus import (
    GENERATOR_VERSION,
    SAMPLE_RATE,
    TASKS,
    PretrainingPool,
    corpus_command,
    default_cache_dir,
    make_task,
    pretraining_pool,
)
from .frontend import LogMel
from .hear import HearTask, Split, read_hear_task, to_kfold, write_hear_task

__all__ = [
    "GENERATOR_VERSION",
    "SAMPLE_RATE",
    "TASKS",
    "HearTask",
    "LogMel",
    "PretrainingPool",
    "Split",
    "corpus_command",
    "default_cache_dir",
    "make_task",
    "pretraining_pool",
    "read_hear_task",
    "to_kfold",
    "write_hear_task",
]
