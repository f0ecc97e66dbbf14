"""The Twilio provider: SMS, MMS and WhatsApp through Twilio's Messages API (twilio 9).

- ``client``: TwilioApi, every REST call of an account (the real twilio Client pointed at
  settings.TWILIO_API_BASE_URL), errors mapped onto ProviderError, media downloads;
- ``provider``: TwilioProvider (the registry's entry): backfill, delta with an overlap
  window, date ranges, and the mapping of a Message onto ParsedMessage;
- ``connect``: the credentials form of the Connections page and the connectors API;
- ``webhooks``: /webhooks/twilio/sms (inbound messages) and /webhooks/twilio/status
  (delivery status callbacks), verified by X-Twilio-Signature.

Storage contract of a ProviderAccount with provider "twilio":

- ``credentials`` (encrypted): {"auth_token": ...} or {"api_key_sid": "SK...",
  "api_key_secret": ...} (both may be stored). Webhook signatures can only be checked with
  the auth token: an account connected with an API key alone syncs by polling, and its
  webhooks are refused (logged) until the auth token is added.
- ``config``: {"account_sid": "AC...", "numbers": ["+15551230000", "whatsapp:+15551230000"],
  "aliases": [the numbers without the whatsapp: prefix]} (aliases make them the owner's own
  addresses: never contacts, and they mark outbound messages).
- ``sync_cursor``: {"date_sent": ISO 8601 of the newest date_sent seen, "numbers": [the
  numbers it covers], "seen": {sid: status} of the messages within the overlap window}.
  A cursor for other numbers than the configured ones is expired: one full resync fetches
  the newly added number's history.

Dependencies point one way: provider -> client, connect -> client, webhooks -> provider.
Nothing here ever changes anything at Twilio: only GET requests are made.
"""
