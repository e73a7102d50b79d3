"""`python -m assistant` is the `saijin` command."""

from assistant.cli.main import main

raise SystemExit(main())
