"""Content-addressed storage of object bytes: plaintext or sealed files, the capacity limit,
the keyring that wraps data keys, rotation and scrubbing."""
