"""``python -m relational_rnn``: the ``relational-rnn`` command."""

from .cli import main

raise SystemExit(main())
