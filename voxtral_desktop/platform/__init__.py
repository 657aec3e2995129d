"""Operating-system glue behind small Protocols: global hotkeys, typing into the focused window,
audio capture and the dictation history.

Nothing here imports Qt. Each backend is chosen by a `create_*` function from the session it
finds (X11, Wayland, macOS, Windows), so the app holds only the Protocol types in `base`.
"""
