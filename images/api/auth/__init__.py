"""Who is calling: OIDC bearer tokens verified against a JWKS, and signed URLs."""
