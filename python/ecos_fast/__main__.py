"""``python -m ecos_fast``: the same as the ``ecos-fast`` command."""

from __future__ import annotations

from .cli import main

if __name__ == "__main__":
    main()
