"""`python -m stack` is `sagactl`."""

from stack.cli import main

raise SystemExit(main())
