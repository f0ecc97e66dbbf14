"""The IMAP provider (imapclient), for any IMAP server including Gmail's.

- ``provider``: ImapProvider (the registry's entry), backfill and delta;
- ``connection``: connecting, logging in, mapping failures onto ProviderError;
- ``protocol``: the cursor's FolderState and the IMAP responses imapclient leaves to us;
- ``security``: which hosts may be used without TLS (also read by add_imap_account).

Dependencies point one way: provider -> connection -> security, and provider -> protocol.
"""
