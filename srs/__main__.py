from srs.cli.main import main

raise SystemExit(main())
