"""Pure cryptography: signed bearer tokens and slow salted hashes of secrets."""
