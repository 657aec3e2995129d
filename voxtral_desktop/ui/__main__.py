import sys

from voxtral_desktop.ui.app import run_app

raise SystemExit(run_app(sys.argv[1:]))
