"""Authentication and authorisation: logins, bearer tokens, policies applied to repositories."""
