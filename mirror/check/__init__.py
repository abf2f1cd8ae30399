"""``mirror check``: a mirror-behaviour suite run against any pull-through mirror, through a
counting, switchable proxy in front of the origin."""
