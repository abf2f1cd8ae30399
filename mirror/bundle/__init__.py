"""Bundles: OCI image layouts (a directory or a tar) carried to and from air-gapped sites.

``references`` parses what to export, ``sink`` writes a layout resumably, ``source`` reads one
(directory or tar, ours or skopeo's), ``export`` walks images through a registry client of
the mirror (or ``stored``: its cache read directly), ``readahead`` overlaps their reads, and
``imports`` places verified images into the cache or hosted repositories.
"""
