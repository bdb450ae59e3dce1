"""``python -m aigc_course.train NAME``: retrain the shipped weights NAME (see :mod:`aigc_course.cli`)."""

from aigc_course.cli import main

main()
