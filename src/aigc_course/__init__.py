"""aigc_course: the helper package of "AIGC from Beginner to Practice".

Every notebook starts with::

    import aigc_course as ac
    env = ac.setup(seed=0)   # seed, device, mode (fast / full), plotting style
    print(env)

Modules: ``runtime`` (mode, device, seed), ``data`` (datasets by name), ``tokenizers``,
``train`` (the training loop), ``checkpoint`` and ``pretrained`` (weights), ``plotting``,
``widgets``, ``models`` (one family per file).
"""

from aigc_course.runtime import (
    autocast,
    get_device,
    in_book_build,
    is_fast,
    is_quiet,
    pick,
    set_seed,
    setup,
)

__version__ = "0.1.0"

__all__ = ["autocast", "get_device", "in_book_build", "is_fast", "is_quiet", "pick", "set_seed", "setup", "__version__"]
