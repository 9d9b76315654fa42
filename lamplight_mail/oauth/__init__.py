"""OAuth 2.0 (modern authentication) for Microsoft 365 and Google.

registration.py  the organisation's app registrations (client secrets encrypted)
providers.py     endpoints, scopes, and what a provider's error means for the admin
signin.py        delegated sign-in: authorization code + PKCE (S256) + state
tokens.py        access tokens for sending: refresh or client credentials, shared through
                 Redis (encrypted) under a lock so many workers refresh once

Token HTTP is Authlib's (OAuth2Session over requests); nothing here depends on a request object
except signin.py's callers, which pass what they need.
"""
