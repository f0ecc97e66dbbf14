"""Gmail through the Gmail API (google-api-python-client), connected by OAuth or by a Workspace
service account with domain-wide delegation.

Modules: ``credentials`` (the google-auth credentials of an account, refreshed under a
per-account lock), ``client`` (the API client: quota bucket, retries, batches), ``provider``
(the MessageProvider), ``connect`` (the OAuth connect flow), ``push`` (users.watch, its renewal
and the Pub/Sub push endpoint), ``enroll`` (domain-wide delegation).

What an account stores (the contract between these modules):

``ProviderAccount.credentials`` (encrypted), one of
- ``{"kind": "oauth", "refresh_token": str, "access_token": str, "expiry": ISO-8601 UTC,
  "scopes": [str]}``: a user who signed in;
- ``{"kind": "service_account", "service_account_info": {the key file's JSON}, "subject": email,
  "access_token": str, "expiry": ISO-8601 UTC}``: a mailbox impersonated by a delegated
  service account (access token cached; the key is never logged or answered).

``ProviderAccount.config``: ``{"email": address}`` (plus optional ``"initial_days"``: an int or
"all", overriding GMAIL_INITIAL_DAYS). ``external_address`` is the address as well.

``ProviderAccount.sync_cursor``: ``{"history_id": str}``.
``ProviderAccount.push_expires_at`` / ``push_state``: the users.watch expiry and
``{"topic": str, "history_id": str}`` of the last watch call.
"""
