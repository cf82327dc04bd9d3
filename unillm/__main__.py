"""`python -m unillm`: the `unillm` command, for when the console script is not on PATH
(a venv that is not activated, `pipx run`, a notebook's `!python -m unillm ...`)."""

from .cli.main import main

main()
