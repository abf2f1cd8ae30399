"""Who may pull: tenancies, users, groups, auth tokens, policies, repositories and rules."""
