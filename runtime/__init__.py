"""Runtime services below nodes/ and engine/: settings, folders, progress and interrupts, the model cache, and
the one error root. Nothing here imports any other NodeWeaver package (tests/test_layering.py checks)."""
