from srs.cli import main

raise SystemExit(main())
