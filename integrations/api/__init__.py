"""The integrations REST API: connectors (connected accounts), providers and sync runs.

- ``serializers``: what is read and written; never a credential in anything read.
- ``views``: the viewsets, owner-scoped (another user's object is a 404); they validate
  and call the services of integrations.accounts and integrations.tasks.
Routes are in integrations/api_urls.py.
"""
