"""Triggers: connector-aware rules that fire signed webhooks or create tasks on new communications.

- conditions: validating a trigger's match conditions and compiling them into fast matchers;
- outbound: the SSRF guard and the one HTTP POST every webhook goes through;
- signing and payloads: what is sent, and how the receiver checks it (docs/verify_webhook.py);
- services: firing after a batch commits, delivering with retries, redelivery, test sends;
- api, cards: the REST API and the Connections page's per-connector list.
"""
