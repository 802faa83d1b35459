"""``python -m audiorank.audio [n_clips]``: the corpus's generation speed report (see :func:`.tasks.benchmark`)."""

from .tasks import main

main()
