"""``python -m herald_cli`` runs the same CLI as the ``herald`` script."""

from herald_cli.main import main

raise SystemExit(main())
