"""Microsoft 365 / Outlook.com mail through Microsoft Graph, connected with msal.

Modules: ``auth`` (msal: the account's token cache, refreshed under a per-account lock),
``client`` (GraphClient: every Graph call, with retries, throttling, the per-mailbox
concurrency limit and budget, and JSON ``$batch``), ``provider`` (the MessageProvider: delta
per folder, backfill, historical range), ``connect`` (the OAuth connect flow), ``push``
(change-notification subscriptions, their renewal, and the two webhooks).

What an account stores (the contract between these modules):

``ProviderAccount.credentials`` (encrypted):
``{"token_cache": str (msal.SerializableTokenCache.serialize()), "home_account_id": str,
"scopes": [str, ...] (the Graph scopes the sign-in granted, without the OpenID ones: "Mail.Read",
"User.Read", and "Mail.ReadWrite" when write-back asked for it and the user allowed it; absent in
accounts connected before it was recorded, which means "Mail.Read", "User.Read"),
"client_state": str (the push subscription's secret, once push is on)}``. msal owns the cache's
content (refresh token, access token, id token); nothing else reads or writes tokens. Token
refreshes ask for ``scopes`` (auth.stored_scopes), so a token keeps what was granted.

``ProviderAccount.config``: ``{"email": address, "folders": [well-known name or folder id, ...]}``
(``folders`` optional, default OUTLOOK_FOLDERS: Inbox and SentItems). ``external_address`` is
the address as well.

``ProviderAccount.sync_cursor``: ``{"folders": {name: {"delta_link": url} | {"next_link": url}}}``:
per folder, the deltaLink of its last complete round, or the nextLink of the round in progress
(saved after every stored page). The links are Graph's, used verbatim.

``ProviderAccount.push_expires_at`` / ``push_state``: the subscription's expiry and
``{"subscription_id": str, "resource": str, "notification_url": str}``; the clientState secret
lives in the credentials, never in push_state.
"""
