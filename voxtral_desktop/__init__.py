"""voxtral-desktop: local, private dictation and transcription with Voxtral Mini 4B Realtime."""

__version__ = "0.1.0"
