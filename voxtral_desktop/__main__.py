from voxtral_desktop.cli import main

raise SystemExit(main())
