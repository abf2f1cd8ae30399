"""The admin API: identity (tenancies, users, groups, tokens, policies, rules), repositories,
retention."""
