import multiprocessing

from voxtral_desktop.cli import main

if __name__ == "__main__":
    multiprocessing.freeze_support()  # worker processes (audio/prefetch.py) of a frozen app
    raise SystemExit(main())
